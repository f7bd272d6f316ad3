// Progressive enhancement: a colour picker beside each text box that names it (data-for), kept
// in step with the box both ways. Without JavaScript the box alone sets the colour.
document.querySelectorAll("input[type=color][data-for]").forEach(function (picker) {
  var box = document.getElementById(picker.dataset.for);
  if (!box || picker.type !== "color") return;  // a browser without a picker shows the box
  picker.hidden = false;
  picker.addEventListener("input", function () { box.value = picker.value; });
  box.addEventListener("input", function () {
    var typed = box.value.trim().replace(/^#?/, "#").toLowerCase();
    if (/^#[0-9a-f]{6}$/.test(typed)) picker.value = typed;
  });
});
