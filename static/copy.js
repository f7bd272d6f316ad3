// Progressive enhancement: a "Copy" button beside each address marked data-copy.
// Without JavaScript the address is still there to select and copy by hand. The words come
// from the script tag's data-copy-* attributes, in the page's language.
var words = (document.currentScript && document.currentScript.dataset) || {};
document.querySelectorAll("[data-copy]").forEach(function (field) {
  if (!navigator.clipboard) return;
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = words.copyLabel || "Copy";
  var status = document.createElement("span");
  status.setAttribute("role", "status");
  status.className = "hint";
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(
      function () { status.textContent = words.copyDone || "Copied."; },
      function () { status.textContent = words.copyFailed || "Could not copy; select the address and copy it."; }
    );
  });
  field.after(button, status);
});
