"""``StepUpRequired``: a DRF permission that asks for a fresh step-up grant (RFC 9470 for token clients)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rest_framework import exceptions, status
from rest_framework.permissions import BasePermission

from django_emailotp import services
from django_emailotp.conf import app_settings
from django_emailotp.exceptions import ActionNotDescribed
from django_emailotp.purposes import STEP_UP
from django_emailotp.services import StepUpRequirement
from django_emailotp.step_up import step_up_challenge


class StepUpRequiredError(exceptions.APIException):
    """401 with ``{"error": "step_up_required", ...}`` and, for token clients, an RFC 9470 WWW-Authenticate."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "step_up_required"

    def __init__(self, request: Any, requirement: StepUpRequirement) -> None:
        body, header = step_up_challenge(request, requirement, api=True)
        super().__init__()
        self.detail = body
        self.auth_header = header


class StepUpRequired(BasePermission):
    """Allow the request only with a fresh step-up grant for ``purpose`` (bound to the session or token).

    Configure by subclassing (class attributes) or with :meth:`with_options`. ``action`` describes what the
    request would do ("Send 500 EUR to ACME Ltd"): only a grant from a code issued for that exact action passes.
    As a class attribute it is a method ``action(self, request)``; :meth:`with_options` takes ``action(request)``.
    """

    purpose: str = STEP_UP
    max_age: int | None = None
    single_use: bool = False
    action: Callable[..., str] | None = None

    @classmethod
    def with_options(
        cls,
        *,
        purpose: str = STEP_UP,
        max_age: int | None = None,
        single_use: bool = False,
        action: Callable[[Any], str] | None = None,
    ) -> type[StepUpRequired]:
        options = {
            "purpose": purpose,
            "max_age": max_age,
            "single_use": single_use,
            "action": staticmethod(action) if action is not None else None,
        }
        return type(f"StepUpRequired[{purpose}]", (cls,), options)

    @classmethod
    def step_up_requirement(cls) -> StepUpRequirement:
        """The purpose, window and single use asked for, without the action (it is described per request).

        The middleware recognises step-up permissions by this classmethod, to prompt a browser navigating to the
        view; it does not import this module.
        """
        return StepUpRequirement(purpose=cls.purpose, max_age=cls.max_age, single_use=cls.single_use)

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        requirement = replace(self.step_up_requirement(), action=self.action)
        try:
            return self._check(request, requirement)
        except ActionNotDescribed as exc:
            raise exceptions.ParseError(str(exc)) from exc

    def _check(self, request: Any, requirement: StepUpRequirement) -> bool:
        if request.method != request._request.method:
            # The browsable API and OPTIONS metadata ask again for other methods on a cloned request, to decide
            # which forms to show: answer without using up a grant or auditing a requirement.
            return services.find_step_up_grant(request, requirement) is not None
        if services.use_step_up_grant(request, requirement):
            return True
        services.record_step_up_required(request, requirement)
        raise StepUpRequiredError(request, requirement)


class SignedInOrSigningIn(BasePermission):
    """Signed-in clients, and anonymous ones while ``EMAIL_OTP_SIGN_IN_ENABLED``: signing in is what they came for.

    The views let an anonymous client do nothing but sign in.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) or app_settings.SIGN_IN_ENABLED is True
