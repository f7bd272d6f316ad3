// Security keys and passkeys (WebAuthn) in the staff area, as progressive enhancement: a
// button[data-webauthn="create"|"get"] carries the server's options as JSON (data-options);
// a click asks the browser for the key, puts the key's answer in its form's hidden
// `credential` field and sends the form. The server checks everything
// (scheduler/staff/security_keys.py); without JavaScript or WebAuthn the buttons stay hidden
// and the code from the app works as before.
(function () {
  var words = document.currentScript ? document.currentScript.dataset : {};
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  document.querySelectorAll("[data-webauthn-section]").forEach(function (section) {
    section.hidden = false;
  });
  document.querySelectorAll("[data-webauthn-unsupported]").forEach(function (note) {
    note.hidden = true;
  });
  document.querySelectorAll("button[data-webauthn]").forEach(function (button) {
    button.addEventListener("click", function () { ask(button); });
  });

  function ask(button) {
    var form = button.form;
    var status = button.parentElement.querySelector("[data-webauthn-status]");
    var name = form.querySelector('input[name="name"]');
    if (name && !name.value.trim()) {
      say(status, words.nameNeeded);
      name.focus();
      return;
    }
    var options = JSON.parse(button.dataset.options);
    var creating = button.dataset.webauthn === "create";
    options.challenge = bytes(options.challenge);
    if (options.user) options.user.id = bytes(options.user.id);
    (options.excludeCredentials || options.allowCredentials || []).forEach(function (known) {
      known.id = bytes(known.id);
    });
    button.disabled = true;
    say(status, words.waiting);
    var asked = creating
      ? navigator.credentials.create({ publicKey: options })
      : navigator.credentials.get({ publicKey: options });
    asked
      .then(function (credential) {
        form.querySelector('input[name="credential"]').value = JSON.stringify(answer(credential));
        form.submit();
      })
      .catch(function () {
        button.disabled = false;
        say(status, words.failed);
      });
  }

  function say(status, text) {
    if (status) status.textContent = text || "";
  }

  // What py_webauthn reads: the credential with its binary parts in base64url.
  function answer(credential) {
    var response = credential.response;
    var shaped = {
      id: credential.id,
      rawId: text(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: text(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      shaped.response.attestationObject = text(response.attestationObject);
      shaped.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      shaped.response.authenticatorData = text(response.authenticatorData);
      shaped.response.signature = text(response.signature);
      if (response.userHandle) shaped.response.userHandle = text(response.userHandle);
    }
    return shaped;
  }

  function bytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out.buffer;
  }

  function text(buffer) {
    var binary = "";
    new Uint8Array(buffer).forEach(function (b) { binary += String.fromCharCode(b); });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
})();
