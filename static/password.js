// Progressive enhancement for password fields (without JavaScript they work as plain fields):
// - every password field gets a "Show" button that shows what was typed (OWASP ASVS 2.1.12);
// - a new password (data-strength) gets a meter saying how guessable it is, from the same
//   estimate the server makes when it is saved (POST /staff/password/strength, ASVS 2.1.8).
(function () {
  // The words come from the page's language, on the script tag.
  var labels = document.currentScript ? document.currentScript.dataset : {};
  var showText = labels.show || "Show";
  var hideText = labels.hide || "Hide";

  document.querySelectorAll('input[type="password"]').forEach(function (field) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary show-password";
    button.textContent = showText;
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-controls", field.id);
    button.addEventListener("click", function () {
      var shown = field.type === "password";
      field.type = shown ? "text" : "password";
      button.textContent = shown ? hideText : showText;
      button.setAttribute("aria-pressed", shown ? "true" : "false");
      field.focus();
    });
    field.after(button);
    if (field.hasAttribute("data-strength")) meter(field, button);
  });

  function meter(field, after) {
    var form = field.form;
    var token = form && form.querySelector('input[name="csrf_token"]');
    var email = form && form.querySelector('input[name="email"]');
    var bar = document.createElement("meter");
    bar.min = 0;
    bar.max = 4;
    bar.low = 2;
    bar.high = 3;
    bar.optimum = 4;
    bar.value = 0;
    bar.id = field.id + "-strength";
    bar.hidden = true;
    var status = document.createElement("span");
    status.className = "hint strength";
    status.setAttribute("role", "status");
    status.id = field.id + "-strength-text";
    bar.setAttribute("aria-labelledby", status.id);
    after.after(bar, status);
    var timer = null;
    var asked = 0;
    field.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 300);
    });

    function ask() {
      var mine = ++asked;
      if (!field.value) {
        bar.hidden = true;
        status.textContent = "";
        return;
      }
      fetch("/staff/password/strength", {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "X-CSRFToken": token ? token.value : "",
        },
        body: JSON.stringify({ password: field.value, email: email ? email.value : null }),
      })
        .then(function (answer) { return answer.ok ? answer.json() : null; })
        .then(function (strength) {
          if (!strength || mine !== asked) return;
          bar.hidden = false;
          bar.value = strength.score;
          status.textContent = strength.label;
          field.dataset.strong = strength.enough ? "yes" : "no";
        })
        .catch(function () {});
    }
  }
})();
