"""What every screen of the app's admin shares: timestamps in UTC, badges that pair a word with a tone, links
between the screens and to the user admin, and the read-only base class."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_emailotp.models import AuditEvent

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# Badges pair a word (and a symbol) with a tone, so no state is told by colour alone.
OK, WARNING, ERROR, QUIET = "ok", "warning", "error", "quiet"


def utc(moment: datetime | None) -> str:
    """A timestamp as shown in the admin: UTC, to the second, whatever ``TIME_ZONE`` is."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def utc_column(field: str, description: StrOrPromise, *, optional: bool = False) -> Callable[[Any, Any], str | None]:
    """A column (list or detail) that shows the timestamp ``field`` in UTC, ordered by it; an ``optional`` one
    shows "-" while the field is empty."""
    if optional:

        @admin.display(description=description, ordering=field, empty_value="-")
        def optional_column(model_admin: Any, obj: Any) -> str | None:
            return utc(getattr(obj, field)) or None

        return optional_column

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return utc(getattr(obj, field))

    return column


def badge(tone: str, symbol: str, label: object) -> SafeString:
    return format_html(
        '<span class="emailotp-badge emailotp-badge--{}"><span aria-hidden="true">{}</span> {}</span>',
        tone,
        symbol,
        label,
    )


class EmailOTPAdminMixin:
    """Links between the app's screens and to the user admin."""

    admin_site: admin.AdminSite

    def admin_url(self, model: type[Model] | Model, view: str, *args: Any) -> str:
        opts = model._meta
        return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{view}", args=args)

    def user_link(self, user: Any) -> str:
        if user is None:
            return "-"
        if not self.admin_site.is_registered(type(user)):
            return str(user.get_username())
        return format_html('<a href="{}">{}</a>', self.admin_url(user, "change", user.pk), user.get_username())

    @admin.display(description=_("user"), ordering="user")
    def user_column(self, obj: Any) -> str:
        """The row's user, linked to the user admin."""
        return self.user_link(obj.user)

    def audit_url(self, **filters: object) -> str:
        return f"{self.admin_url(AuditEvent, 'changelist')}?{urlencode(filters)}"

    def user_search_fields(self) -> list[str]:
        """The user's username field and its email field if it has one, whatever the user model calls them.

        ``get_email_field_name()`` answers "email" even for a model without that field: searching by it would be a
        FieldError (a 500), so only fields the model really has are searched.
        """
        user_model = get_user_model()
        names = {user_model.USERNAME_FIELD, user_model.get_email_field_name()}
        return [f"user__{name}" for name in sorted(names) if _has_field(user_model, name)]


def _has_field(model: type[Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:  # pragma: no cover - a user model without it runs in a subprocess (test_nomail_user)
        return False
    return True


class ReadOnlyAdmin(EmailOTPAdminMixin, admin.ModelAdmin):
    """No add, change or delete for anyone, superusers included; viewing needs the model's view permission."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
