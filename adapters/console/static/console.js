// kmsbackup console: opens htmx-loaded content in the page's dialog, closes
// it, copies a data key, and submits the day picker on change. Every page
// works without this file; it only saves clicks.
(function () {
  "use strict";
  function dialog() { return document.getElementById("dialog"); }

  document.addEventListener("htmx:afterSwap", function (e) {
    var d = dialog();
    if (!d || e.detail.target.id !== "dialog-body") return;
    // A finished restore changed the page under the dialog: reload it
    // when the dialog closes.
    if (d.querySelector("#validation, .findings-after-apply")) d.dataset.reload = "true";
    if (!d.open) d.showModal();
    var first = d.querySelector("[autofocus], input:not([type=hidden]), select, button, a[href]");
    if (first) first.focus();
  });

  document.addEventListener("close", function (e) {
    var d = dialog();
    if (e.target !== d) return;
    document.getElementById("dialog-body").innerHTML = "";
    if (d.dataset.reload === "true") {
      d.dataset.reload = "";
      window.location.reload();
    }
  }, true);

  document.addEventListener("click", function (e) {
    var close = e.target.closest("[data-close]");
    var d = dialog();
    if (close && d && d.open && d.contains(close)) {
      e.preventDefault();
      d.close();
      return;
    }
    var copy = e.target.closest("[data-copy]");
    if (copy) {
      var input = document.getElementById(copy.dataset.copy);
      var status = document.getElementById("copy-status");
      var say = function (s) { if (status) status.textContent = s; };
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () { say("Copied."); },
          function () { say("Copy failed: select the key and copy it yourself."); });
      } else {
        say(document.execCommand("copy") ? "Copied." : "Select the key and copy it yourself.");
      }
    }
  });

  document.addEventListener("change", function (e) {
    if (e.target.matches("select[data-autosubmit]")) e.target.form.requestSubmit();
  });
})();
