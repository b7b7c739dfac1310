"""One error hierarchy. Domain errors also subclass the built-in or Django exception callers expect."""

from __future__ import annotations

import math
from datetime import datetime

from django.core.exceptions import BadRequest, ImproperlyConfigured, PermissionDenied


class EmailOTPError(Exception):
    """Base class of every error this app raises."""


class ConfigurationError(EmailOTPError, ImproperlyConfigured):
    """The project's settings make a feature unusable."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{package}' package. Install it with: pip install 'django-emailotp[{extra}]'"
        )


class UnknownPurpose(EmailOTPError, ValueError):
    """The purpose is neither built in nor registered in ``EMAIL_OTP_PURPOSES``."""


class NoEmailAddress(EmailOTPError, ValueError):
    """There is no valid address to send the code to."""


class ResendCooldown(EmailOTPError, PermissionDenied):
    """A new code was asked for before the cooldown of the live one ran out."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"A new code can be sent in {retry_after} seconds.")


class ActionNotDescribed(EmailOTPError, BadRequest):
    """A view's bound-action function could not describe this request (Django answers 400)."""


class RateLimited(EmailOTPError, PermissionDenied):
    """Too many requests; ``retry_after`` seconds until the window that refused it ends."""

    def __init__(self, retry_after: int, limit: str) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(f"Too many requests; try again in {retry_after} seconds.")


class SendLimitReached(RateLimited):
    """A signed-in requester asked for more codes than their own budget allows (``limit`` names which).

    Raised instead of a silent "sent" (SECURITY.md rule 19), so the owner learns when to try again. Catching
    :class:`RateLimited` catches it too.
    """


class LockedOut(EmailOTPError, PermissionDenied):
    """The user's email-code path is locked after too many wrong codes, until ``locked_until``."""

    def __init__(self, locked_until: datetime) -> None:
        self.locked_until = locked_until
        super().__init__(f"Too many wrong codes; locked until {locked_until.isoformat()}.")

    @property
    def retry_after(self) -> int:
        from django.utils import timezone

        return max(1, math.ceil((self.locked_until - timezone.now()).total_seconds()))


class LimiterUnavailable(EmailOTPError):
    """The rate-limit store failed; requests are refused (fail closed) until it answers again."""


class DeliveryUnavailable(EmailOTPError):
    """The code email could not be handed to the delivery pipeline (for example, the broker is down)."""


class DeliveryError(EmailOTPError):
    """Sending a code email failed. ``transient`` says whether trying again may succeed.

    When the delivery is to be retried, ``attempt`` is the number of attempts made so far (the value the next
    message must carry) and ``retry_in`` the seconds to wait first (exponential backoff with jitter).
    """

    def __init__(self, message: str, *, transient: bool, attempt: int = 0, retry_in: float = 0.0) -> None:
        self.transient = transient
        self.attempt = attempt
        self.retry_in = retry_in
        super().__init__(message)


class SecondFactorNotOptional(EmailOTPError, PermissionDenied):
    """Users may turn the second factor at login on or off only when ``EMAIL_OTP_LOGIN_POLICY = "optional"``."""
