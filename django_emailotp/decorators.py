"""Views that need step-up: the decorator and the mixin wrap the view in a guard that demands a fresh grant by
itself, middleware or not (SECURITY.md rule 20). The mark they leave lets ``EmailOTPMiddleware`` check first, and
the guard then lets the request through without checking (and using a grant) again."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ClassVar, TypeVar, cast, overload

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from django_emailotp.purposes import STEP_UP
from django_emailotp.services import StepUpRequirement
from django_emailotp.step_up import demand, has_passed

REQUIREMENT_ATTR = "emailotp_step_up"
EXEMPT_ATTR = "emailotp_step_up_exempt"

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


@overload
def step_up_required(view: ViewFunc) -> ViewFunc: ...
@overload
def step_up_required(
    view: None = None,
    *,
    purpose: str = STEP_UP,
    max_age: int | None = None,
    single_use: bool = False,
    action: Callable[[HttpRequest], str] | None = None,
) -> Callable[[ViewFunc], ViewFunc]: ...
def step_up_required(
    view: ViewFunc | None = None,
    *,
    purpose: str = STEP_UP,
    max_age: int | None = None,
    single_use: bool = False,
    action: Callable[[HttpRequest], str] | None = None,
) -> ViewFunc | Callable[[ViewFunc], ViewFunc]:
    """Require a fresh step-up grant for ``purpose`` before the view runs.

    Works bare (``@step_up_required``) and with arguments (``@step_up_required(max_age=60)``), on sync and async
    views. ``max_age`` defaults to ``EMAIL_OTP_STEP_UP_MAX_AGE``; ``single_use`` grants allow exactly one request.
    ``action`` describes, from the request, what it would do (``lambda r: f"Send {r.POST['amount']} EUR"``): the
    email shows that text and only a code confirmed for the same text lets the request through.
    """
    requirement = StepUpRequirement(purpose=purpose, max_age=max_age, single_use=single_use, action=action)

    def guard(view_func: ViewFunc) -> ViewFunc:
        def refusal(request: HttpRequest) -> HttpResponse | None:
            return None if has_passed(request, requirement) else demand(request, view_func, requirement)

        async def async_guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            response = await sync_to_async(refusal)(request)
            return response if response is not None else await view_func(request, *args, **kwargs)

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            response = refusal(request)
            return response if response is not None else view_func(request, *args, **kwargs)

        # wraps() copies the view's attributes (DRF's cls and initkwargs, csrf_exempt, an inner mark) to the guard.
        wrapper: Any = wraps(view_func)(async_guarded if iscoroutinefunction(view_func) else guarded)
        setattr(wrapper, REQUIREMENT_ATTR, requirement)
        return cast(ViewFunc, wrapper)

    return guard(view) if view is not None else guard


def step_up_exempt(view: ViewFunc) -> ViewFunc:
    """Opt a view out of ``EMAIL_OTP_PROTECTED_URLS``."""
    setattr(view, EXEMPT_ATTR, True)
    return view


class StepUpRequiredMixin:
    """Class-based view version of :func:`step_up_required`; options are class attributes."""

    step_up_purpose: ClassVar[str] = STEP_UP
    step_up_max_age: ClassVar[int | None] = None
    step_up_single_use: ClassVar[bool] = False
    step_up_action: ClassVar[Callable[[HttpRequest], str] | None] = None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        view = super().as_view(**initkwargs)  # type: ignore[misc]
        return step_up_required(
            view,
            purpose=cls.step_up_purpose,
            max_age=cls.step_up_max_age,
            single_use=cls.step_up_single_use,
            action=cls.step_up_action,
        )


def requirement_of(view_func: Callable[..., Any]) -> StepUpRequirement | None:
    """The requirement a view was marked with, or None."""
    return getattr(view_func, REQUIREMENT_ATTR, None)


def is_exempt(view_func: Callable[..., Any]) -> bool:
    return bool(getattr(view_func, EXEMPT_ATTR, False))
