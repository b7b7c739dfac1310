// django-emailotp progressive enhancement: everything works without it.
(function () {
  "use strict";
  // Re-submit a kept form right away; the Continue button remains for browsers without JavaScript.
  var replay = document.querySelector("form[data-emailotp-autosubmit]");
  if (replay) { replay.submit(); return; }
  // Count the resend cooldown down.
  var cooldown = document.querySelector("[data-emailotp-cooldown]");
  if (cooldown) {
    var left = parseInt(cooldown.getAttribute("data-emailotp-cooldown"), 10);
    var timer = setInterval(function () {
      left -= 1;
      if (left <= 0) { clearInterval(timer); cooldown.hidden = true; return; }
      cooldown.textContent = cooldown.textContent.replace(/\d+/, String(left));
    }, 1000);
  }
})();
