// django-emailotp progressive enhancement: everything works without it.
(function () {
  "use strict";
  // Re-submit a kept form right away; the Continue button remains for browsers without JavaScript.
  var replay = document.querySelector("form[data-emailotp-autosubmit]");
  if (replay) { replay.submit(); return; }
  // Count the resend cooldown down. The resend button stays focusable (aria-disabled, not disabled) so
  // keyboard and screen-reader users find it, but does nothing until the cooldown ends.
  var cooldown = document.querySelector("[data-emailotp-cooldown]");
  var resend = document.querySelector("[data-emailotp-resend]");
  if (cooldown) {
    var left = parseInt(cooldown.getAttribute("data-emailotp-cooldown"), 10);
    if (resend) {
      resend.setAttribute("aria-disabled", "true");
      resend.setAttribute("aria-describedby", "emailotp-cooldown");
      resend.addEventListener("click", function (event) { if (left > 0) { event.preventDefault(); } });
    }
    var timer = setInterval(function () {
      left -= 1;
      if (left <= 0) {
        clearInterval(timer);
        cooldown.hidden = true;
        if (resend) { resend.removeAttribute("aria-disabled"); resend.removeAttribute("aria-describedby"); }
        return;
      }
      cooldown.textContent = cooldown.textContent.replace(/\d+/, String(left));
    }, 1000);
  }
})();
