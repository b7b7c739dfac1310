"""User-facing messages, in one place so they are translated and worded once."""

from __future__ import annotations

import math
from datetime import UTC, timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_emailotp.exceptions import SendLimitReached
from django_emailotp.limits import SEND_PER_NEW_ADDRESS_DAILY
from django_emailotp.services import VerifyReason

VERIFY_ERRORS = {
    VerifyReason.INVALID_CODE: _("That code is not right. Check the latest email and try again."),
    VerifyReason.EXPIRED: _("That code has expired. Ask for a new one."),
    VerifyReason.USED: _("That code has already been used. Ask for a new one."),
    VerifyReason.BURNED: _("Too many wrong attempts: that code no longer works. Ask for a new one."),
    VerifyReason.SUPERSEDED: _("A newer code was sent. Use the code from the latest email."),
    VerifyReason.WRONG_BINDING: _("That code was not sent for this page. Ask for a new one."),
    VerifyReason.MALFORMED: _("Enter the code as digits only, for example 123456."),
    VerifyReason.NOT_FOUND: _("That code is not right. Check the latest email and try again."),
    VerifyReason.LOCKED_OUT: _("Too many wrong codes: codes by email are paused for this account for now."),
    VerifyReason.RATE_LIMITED: _("Too many attempts from your network. Please try again later."),
}
SEND_FIRST = _("Ask for a code first.")
CODE_SENT = _("We sent a code to %(email)s. It expires in %(minutes)s minutes.")
RESEND_WAIT = _("Please wait %(seconds)s seconds before asking for another code.")
DELIVERY_DOWN = _("We could not send a code right now. Please try again in a few minutes.")
NO_ADDRESS = _("Your account has no email address we can send a code to.")
REPLAY_GONE = _("The form you submitted could not be kept. Please submit it again.")
UNKNOWN_PURPOSE = _("This confirmation is not available.")
NOT_FOUND = _("There is no such code request for you.")
LOCKED_OUT = _("Too many wrong codes: codes by email are paused for this account until %(time)s UTC.")
RATE_LIMITED = _("Too many requests. Please try again in %(minutes)s minutes.")
# A signed-in requester past their own send budget (SECURITY.md rule 19): say when they can ask again.
SEND_LIMIT_REACHED = _(
    "You have asked for several codes in a short time. You can ask for another one at %(time)s UTC, "
    "in %(minutes)s minutes."
)
NEW_ADDRESS_LIMIT_REACHED = _(
    "That address has been sent as many codes today as we send to a new address. You can try again at %(time)s "
    "UTC, in %(minutes)s minutes."
)
LIMITER_DOWN = _("This is unavailable for a moment. Please try again shortly.")
PLEASE_WAIT = _("Please wait")
FORM_EXPIRED = _("Form expired")
BACKUP_CODE_ERRORS = {
    "invalid": _("That backup code is not right, or it was used already."),
    "malformed": _("A backup code has 10 letters and digits, like ABCDE-FGHJK."),
    "rate_limited": _("Too many wrong backup codes. Please try again later."),
}
LOGIN_CODE_SENT = _(
    "Your password was right. We sent a code to %(email)s to finish signing in; it expires in %(minutes)s minutes."
)
LOGIN_LOCKED_OUT = _(
    "Too many wrong codes: codes by email are paused for this account until %(time)s UTC. You can finish signing in "
    "with a backup code."
)
LOGIN_RATE_LIMITED = _("Too many requests from your network. Please try again in %(minutes)s minutes.")
LOGIN_EXPIRED = _("Signing in took too long. Please enter your password again.")
SECOND_FACTOR_ON = _("Sign-in codes are on: after your password, we will ask for a code sent by email.")
SECOND_FACTOR_OFF = _("Sign-in codes are off: your password alone signs you in.")
DEVICE_FORGOTTEN = _("That browser will be asked for a code at its next sign-in.")
# Worded so the page is the same whether or not the address has an account.
SIGN_IN_CODE_SENT = _("If %(email)s belongs to an account, we sent a code to it. It expires in %(minutes)s minutes.")
SIGN_IN_START_AGAIN = _("Your sign-in request has ended. Enter your email address again.")
INVALID_ADDRESS = _("Enter a valid email address.")
EMAIL_CODE_SENT = _("We sent a code to %(email)s. It expires in %(minutes)s minutes.")
EMAIL_VERIFIED = _("Your email address %(email)s is verified.")
EMAIL_CHANGED = _("Your email address is now %(email)s. We told your previous address about the change.")
EMAIL_IN_USE = _("That address is already used by another account; nothing was changed.")
INVALID_CREDENTIALS = _("That username and password do not match an active account.")
EMAIL_DONE_TITLE = _("Email address")


def send_limit_message(error: SendLimitReached) -> str:
    """When a signed-in requester past their own send budget can ask again: the time (UTC) and the minutes."""
    text = NEW_ADDRESS_LIMIT_REACHED if error.limit == SEND_PER_NEW_ADDRESS_DAILY else SEND_LIMIT_REACHED
    again = timezone.now() + timedelta(seconds=error.retry_after)
    return str(text % {"time": again.astimezone(UTC).strftime("%H:%M"), "minutes": math.ceil(error.retry_after / 60)})
