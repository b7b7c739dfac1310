"""Lockouts in the admin: read-only rows (one per user and path) with their state, filters by state and path, the
user's recent audit events, and the one change, unlocking (the selected paths, or every path of the selected users),
which goes through :func:`services.lift_lockout`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_emailotp import services
from django_emailotp.admin.common import ERROR, OK, QUIET, ReadOnlyAdmin, badge, utc, utc_column
from django_emailotp.models import AuditEvent, Lockout

HISTORY_ROWS = 20


class LockoutStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("active", _("locked now")), ("expired", _("expired or lifted")), ("never", _("never locked"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Lockout]) -> QuerySet[Lockout]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(locked_until__gt=now)
        if self.value() == "expired":
            return queryset.filter(locked_until__lte=now)
        if self.value() == "never":
            return queryset.filter(locked_until__isnull=True)
        return queryset


@admin.register(Lockout)
class LockoutAdmin(ReadOnlyAdmin):
    """Read-only rows; the one change is "Unlock selected", which needs the "change lockout" permission."""

    list_display = (
        "user_column",
        "scope",
        "state",
        "locked_until_utc",
        "time_remaining",
        "consecutive_failures",
        "lock_count",
        "last_failure",
        "unlocked_by",
    )
    list_display_links = ("user_column",)
    list_filter = (LockoutStateFilter, "scope")
    ordering = (F("locked_until").desc(nulls_last=True), "pk")
    fields = (
        "user_column",
        "scope",
        "state",
        "locked_until_utc",
        "time_remaining",
        "consecutive_failures",
        "lock_count",
        "last_failure",
        "lifted",
        "unlocked_by",
        "history",
    )
    readonly_fields = fields
    actions = ("unlock_selected", "unlock_every_path")

    locked_until_utc = utc_column("locked_until", _("locked until (UTC)"), optional=True)
    last_failure = utc_column("last_failure_at", _("last wrong code (UTC)"), optional=True)
    lifted = utc_column("unlocked_at", _("lifted (UTC)"), optional=True)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return self.user_search_fields()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lockout]:
        return super().get_queryset(request).select_related("user", "unlocked_by")

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description=_("Unlock selected %(verbose_name_plural)s"), permissions=["unlock"])
    def unlock_selected(self, request: HttpRequest, queryset: QuerySet[Lockout]) -> None:
        """Lift each selected row: that user's lock on that one path."""
        lockouts = list(queryset.select_related("user"))
        lifted = sum(
            services.lift_lockout(lockout.user, scope=lockout.scope, by=request.user, request=request)
            for lockout in lockouts
        )
        self._report(request, lifted, len(lockouts) - lifted)

    @admin.action(description=_("Unlock every path of the selected users"), permissions=["unlock"])
    def unlock_every_path(self, request: HttpRequest, queryset: QuerySet[Lockout]) -> None:
        """Lift every lock of the selected rows' users, whichever path each row is."""
        users = {lockout.user_id: lockout.user for lockout in queryset.select_related("user")}
        lifted = sum(services.lift_lockout(user, by=request.user, request=request) for user in users.values())
        self._report(request, lifted, len(users) - lifted)

    def _report(self, request: HttpRequest, lifted: int, skipped: int) -> None:
        if lifted:
            message = ngettext("Lifted %(count)d lockout.", "Lifted %(count)d lockouts.", lifted)
            self.message_user(request, message % {"count": lifted}, messages.SUCCESS)
        if skipped:
            message = ngettext(
                "%(count)d selected user was not locked out.", "%(count)d selected users were not locked out.", skipped
            )
            self.message_user(request, message % {"count": skipped}, messages.WARNING)

    @admin.display(description=_("state"))
    def state(self, lockout: Lockout) -> SafeString:
        if lockout.is_active():
            return badge(ERROR, "✗", _("locked"))
        if lockout.unlocked_at is not None:
            return badge(OK, "✓", _("lifted by an admin"))
        if lockout.locked_until is not None:
            return badge(QUIET, "○", _("expired"))
        return badge(QUIET, "○", _("never locked"))

    @admin.display(description=_("time remaining"), empty_value="-")
    def time_remaining(self, lockout: Lockout) -> str | None:
        now = timezone.now()
        if lockout.locked_until is None or not lockout.is_active(now):
            return None
        return timeuntil(lockout.locked_until, now)

    @admin.display(description=_("recent activity"))
    def history(self, lockout: Lockout) -> str:
        events = AuditEvent.objects.filter(user_id=lockout.user_id).order_by("-created_at", "-pk")[:HISTORY_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (utc(event.created_at), event.get_event_display(), event.reason, event.purpose, event.ip_address or "")
                for event in events
            ),
        )
        headings = format_html_join(
            "",
            '<th scope="col">{}</th>',
            ((heading,) for heading in (_("time (UTC)"), _("event"), _("reason"), _("purpose"), _("IP address"))),
        )
        return format_html(
            '<table class="emailotp-history" id="emailotp-history"><caption>{}</caption>'
            '<thead><tr>{}</tr></thead><tbody>{}</tbody></table><p><a href="{}">{}</a></p>',
            _("The latest %(count)d audit events of this user, newest first") % {"count": HISTORY_ROWS},
            headings,
            rows,
            self.audit_url(user__id__exact=lockout.user_id),
            _("All audit events of this user"),
        )
