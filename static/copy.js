// Progressive enhancement: a "Copy" button beside each address marked data-copy.
// Without JavaScript the address is still there to select and copy by hand.
document.querySelectorAll("[data-copy]").forEach(function (field) {
  if (!navigator.clipboard) return;
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "Copy";
  var status = document.createElement("span");
  status.setAttribute("role", "status");
  status.className = "hint";
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(
      function () { status.textContent = "Copied."; },
      function () { status.textContent = "Could not copy; select the address and copy it."; }
    );
  });
  field.after(button, status);
});
