"""User-facing messages, in one place so they are translated and worded once."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

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
}
SEND_FIRST = _("Ask for a code first.")
CODE_SENT = _("We sent a code to %(email)s. It expires in %(minutes)s minutes.")
RESEND_WAIT = _("Please wait %(seconds)s seconds before asking for another code.")
DELIVERY_DOWN = _("We could not send a code right now. Please try again in a few minutes.")
NO_ADDRESS = _("Your account has no email address we can send a code to.")
REPLAY_GONE = _("The form you submitted could not be kept. Please submit it again.")
UNKNOWN_PURPOSE = _("This confirmation is not available.")
