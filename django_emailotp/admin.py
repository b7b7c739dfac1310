"""Admin screens: the audit trail (read-only, CSV export), challenges (read-only, never a hash), lockouts (unlock),
step-up grants (read-only) and the activity page.

The admin only reads and translates: lifting a lockout goes through :func:`services.lift_lockout`, and the counts on
the activity page come from :mod:`django_emailotp.stats`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Exists, F, Model, OuterRef, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_emailotp import services, stats
from django_emailotp.models import (
    AuditEvent,
    Challenge,
    ChallengeStatus,
    DeliveryStatus,
    Lockout,
    StepUpGrant,
)

# How much of an audit row's session hash is shown: enough to tell sessions apart and follow one, not the full
# keyed hash (which is also what a challenge issued from that session stores as its binding).
SESSION_PREFIX = 12
HISTORY_ROWS = 20
# A spreadsheet treats a cell that starts with one of these as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "time_utc",
    "event",
    "outcome",
    "reason",
    "user_id",
    "user",
    "purpose",
    "challenge_id",
    "email_pseudonym",
    "session",
    "ip_address",
    "user_agent",
    "data",
)

# Badges pair a word (and a symbol) with a tone, so no state is told by colour alone.
OK, WARNING, ERROR, QUIET = "ok", "warning", "error", "quiet"
STATUS_TONES: dict[str, tuple[str, str]] = {
    ChallengeStatus.PENDING: (WARNING, "…"),
    ChallengeStatus.VERIFIED: (OK, "✓"),
    ChallengeStatus.BURNED: (ERROR, "✗"),
    ChallengeStatus.SUPERSEDED: (QUIET, "○"),
    ChallengeStatus.EXPIRED: (QUIET, "○"),
}
DELIVERY_TONES: dict[str, tuple[str, str]] = {
    DeliveryStatus.PENDING: (QUIET, "…"),
    DeliveryStatus.QUEUED: (QUIET, "…"),
    DeliveryStatus.SENT: (OK, "✓"),
    DeliveryStatus.DELIVERED: (OK, "✓"),
    DeliveryStatus.RETRYING: (WARNING, "↻"),
    DeliveryStatus.DEFERRED: (WARNING, "↻"),
    DeliveryStatus.SKIPPED: (QUIET, "○"),
    DeliveryStatus.FAILED: (ERROR, "✗"),
    DeliveryStatus.BOUNCED: (ERROR, "✗"),
    DeliveryStatus.REJECTED: (ERROR, "✗"),
    DeliveryStatus.COMPLAINED: (ERROR, "✗"),
}

# Activity chart geometry (SVG user units) and one colour per series, each at least 3:1 against the admin's light
# and dark backgrounds; every chart also names its series in text.
CHART_LEFT, CHART_TOP, CHART_BOTTOM, CHART_RIGHT = 36, 10, 24, 6
CHART_PLOT_HEIGHT, CHART_STEP, CHART_BAR = 90, 14, 10
SERIES_COLOURS = {
    "issued": "#3b82f6",
    "verified": "#16a34a",
    "failed": "#dc2626",
    "rate_limited": "#d97706",
    "locked_out": "#9333ea",
    "delivery_failed": "#64748b",
}


def utc(moment: datetime | None) -> str:
    """A timestamp as shown in the admin: UTC, to the second, whatever ``TIME_ZONE`` is."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def csv_cell(value: object) -> str:
    """The text of one CSV cell, with a leading apostrophe if a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def badge(tone: str, symbol: str, label: object) -> SafeString:
    return format_html(
        '<span class="emailotp-badge emailotp-badge--{}"><span aria-hidden="true">{}</span> {}</span>',
        tone,
        symbol,
        label,
    )


class _Echo:
    """A file-like object for csv.writer that hands each written line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


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

    def audit_url(self, **filters: object) -> str:
        return f"{self.admin_url(AuditEvent, 'changelist')}?{urlencode(filters)}"

    def user_search_fields(self) -> list[str]:
        """The user's username and email fields, whatever the user model calls them."""
        user_model = get_user_model()
        return [f"user__{name}" for name in sorted({user_model.USERNAME_FIELD, user_model.get_email_field_name()})]


class ReadOnlyAdmin(EmailOTPAdminMixin, admin.ModelAdmin):
    """No add, change or delete for anyone, superusers included; viewing needs the model's view permission."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "time",
        "event",
        "outcome",
        "reason",
        "user_column",
        "purpose",
        "challenge",
        "email_pseudonym",
        "ip_address",
    )
    list_display_links = ("time",)
    list_filter = ("event", "purpose", "outcome", "created_at")
    date_hierarchy = "created_at"
    fields = (
        "time",
        "event",
        "outcome",
        "reason",
        "user_column",
        "purpose",
        "challenge",
        "email_pseudonym",
        "session",
        "ip_address",
        "user_agent",
        "details",
    )
    readonly_fields = fields
    actions = ("export_csv",)
    list_per_page = 50
    show_full_result_count = False

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*self.user_search_fields(), "email_pseudonym", "ip_address"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        # Whether the challenge still exists decides between a link and a plain id: a subquery in the same SELECT.
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .annotate(challenge_exists=Exists(Challenge.objects.filter(pk=OuterRef("challenge_id"))))
        )

    @admin.display(description=_("time (UTC)"), ordering="created_at")
    def time(self, event: AuditEvent) -> str:
        return utc(event.created_at)

    @admin.display(description=_("user"), ordering="user")
    def user_column(self, event: AuditEvent) -> str:
        return self.user_link(event.user)

    @admin.display(description=_("challenge"))
    def challenge(self, event: AuditEvent) -> str:
        if event.challenge_id is None:
            return "-"
        if getattr(event, "challenge_exists", False):
            url = self.admin_url(Challenge, "change", event.challenge_id)
            return format_html('<a href="{}">{}</a>', url, event.challenge_id)
        return str(event.challenge_id)

    @admin.display(description=_("session (hash prefix)"))
    def session(self, event: AuditEvent) -> str:
        return event.session_hash[:SESSION_PREFIX]

    @admin.display(description=_("details"))
    def details(self, event: AuditEvent) -> str:
        if not event.data:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(event.data, indent=2, sort_keys=True, cls=DjangoJSONEncoder))

    @admin.action(description=_("Export selected audit events as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> StreamingHttpResponse:
        rows = queryset.select_related("user").order_by("created_at", "pk").iterator(chunk_size=2000)
        writer = csv.writer(_Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(CSV_COLUMNS)
            for event in rows:
                yield writer.writerow([csv_cell(value) for value in self.csv_values(event)])

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="emailotp-audit-{stamp}.csv"'
        return response

    @staticmethod
    def csv_values(event: AuditEvent) -> Iterable[object]:
        return (
            event.created_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            event.event,
            event.outcome,
            event.reason,
            event.user_id,
            event.user.get_username() if event.user is not None else "",
            event.purpose,
            event.challenge_id,
            event.email_pseudonym,
            event.session_hash[:SESSION_PREFIX],
            event.ip_address,
            event.user_agent,
            json.dumps(event.data, sort_keys=True, cls=DjangoJSONEncoder) if event.data else "",
        )

    # The activity page -------------------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        # Before the default patterns: "<path:object_id>/" would otherwise take "activity/".
        activity = path("activity/", self.admin_site.admin_view(self.activity_view), name="emailotp_activity")
        return [activity, *super().get_urls()]

    def activity_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        days = stats.daily_counts(now=now)
        first, last = days[0].day, days[-1].day
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": _("Email code activity"),
            "first_day": first,
            "last_day": last,
            "charts": [chart(series, days) for series in stats.SERIES],
            "series": stats.SERIES,
            "rows": [(day.day, [day[series.key] for series in stats.SERIES]) for day in days],
            "totals": [stats.totals(days)[series.key] for series in stats.SERIES],
            "top_ips": [
                (source, self.audit_url(ip_address=source.ip_address), utc(source.last_seen))
                for source in stats.top_failure_ips(now=now)
            ],
            "top_users": [
                (source, self.audit_url(user__id__exact=source.user_id), utc(source.last_seen))
                for source in stats.top_failure_users(now=now)
            ],
            "changelist_url": self.admin_url(AuditEvent, "changelist"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/emailotp/activity.html", context)


def chart(series: stats.Series, days: list[stats.DayCounts]) -> dict[str, Any]:
    """Everything the template needs to draw one series as an SVG bar chart; numbers are preformatted strings,
    so no locale's decimal comma ever reaches the SVG."""
    values = [day[series.key] for day in days]
    top = max(values) or 1
    baseline = CHART_TOP + CHART_PLOT_HEIGHT
    bars = []
    labels = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        x = CHART_LEFT + index * CHART_STEP + (CHART_STEP - CHART_BAR) / 2
        height = value / top * CHART_PLOT_HEIGHT
        if value:
            bars.append(
                {
                    "x": f"{x:.1f}",
                    "y": f"{baseline - height:.1f}",
                    "height": f"{height:.1f}",
                    "day": day.day,
                    "value": value,
                }
            )
        # A date under every seventh bar, counted back from today so that today is always labelled.
        if (len(days) - 1 - index) % 7 == 0:
            labels.append({"x": f"{x + CHART_BAR / 2:.1f}", "text": day.day.strftime("%m-%d")})
    peak = max(range(len(values)), key=lambda index: (values[index], index))
    return {
        "key": series.key,
        "label": series.label,
        "colour": SERIES_COLOURS[series.key],
        "total": sum(values),
        "peak_value": values[peak],
        "peak_day": days[peak].day,
        "top": max(values),
        "bars": bars,
        "bar_width": CHART_BAR,
        "labels": labels,
        "width": CHART_LEFT + len(days) * CHART_STEP + CHART_RIGHT,
        "height": baseline + CHART_BOTTOM,
        "axis_x": CHART_LEFT - 4,
        "axis_end": CHART_LEFT + len(days) * CHART_STEP,
        "plot_top": CHART_TOP,
        "baseline": baseline,
        "label_y": baseline + 16,
    }


@admin.register(Challenge)
class ChallengeAdmin(ReadOnlyAdmin):
    list_display = (
        "created",
        "user_column",
        "purpose",
        "status_badge",
        "delivery_badge",
        "attempts_used",
        "expires",
        "consumed",
        "esp_message_id",
    )
    list_filter = ("status", "delivery_status", "purpose", "created_at")
    date_hierarchy = "created_at"
    # Never code_hash or binding: the fields are listed, not derived from the model.
    fields = (
        "id",
        "user_column",
        "email",
        "purpose",
        "action",
        "context",
        "status_badge",
        "attempts_used",
        "created",
        "expires",
        "consumed",
        "delivery_badge",
        "delivery_attempts",
        "sent",
        "esp_message_id",
        "ip_address",
        "user_agent",
        "audit_trail",
    )
    readonly_fields = fields
    list_per_page = 50

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*self.user_search_fields(), "email", "esp_message_id", "ip_address"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Challenge]:
        return super().get_queryset(request).select_related("user").defer("code_hash", "binding")

    @admin.display(description=_("created (UTC)"), ordering="created_at")
    def created(self, challenge: Challenge) -> str:
        return utc(challenge.created_at)

    @admin.display(description=_("expires (UTC)"), ordering="expires_at")
    def expires(self, challenge: Challenge) -> str:
        return utc(challenge.expires_at)

    @admin.display(description=_("consumed (UTC)"), ordering="consumed_at", empty_value="-")
    def consumed(self, challenge: Challenge) -> str | None:
        return utc(challenge.consumed_at) or None

    @admin.display(description=_("sent (UTC)"), ordering="sent_at", empty_value="-")
    def sent(self, challenge: Challenge) -> str | None:
        return utc(challenge.sent_at) or None

    @admin.display(description=_("user"), ordering="user")
    def user_column(self, challenge: Challenge) -> str:
        return self.user_link(challenge.user)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, challenge: Challenge) -> SafeString:
        tone, symbol = STATUS_TONES.get(challenge.status, (QUIET, "○"))
        return badge(tone, symbol, challenge.get_status_display())

    @admin.display(description=_("delivery"), ordering="delivery_status")
    def delivery_badge(self, challenge: Challenge) -> SafeString:
        tone, symbol = DELIVERY_TONES.get(challenge.delivery_status, (QUIET, "○"))
        return badge(tone, symbol, challenge.get_delivery_status_display())

    @admin.display(description=_("wrong attempts"), ordering="attempts")
    def attempts_used(self, challenge: Challenge) -> str:
        return f"{challenge.attempts}/{challenge.max_attempts}"

    @admin.display(description=_("audit trail"))
    def audit_trail(self, challenge: Challenge) -> str:
        return format_html(
            '<a href="{}">{}</a>', self.audit_url(challenge_id=challenge.pk), _("Audit events of this challenge")
        )


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
        "state",
        "locked_until_utc",
        "time_remaining",
        "consecutive_failures",
        "lock_count",
        "last_failure",
        "unlocked_by",
    )
    list_display_links = ("user_column",)
    list_filter = (LockoutStateFilter,)
    ordering = (F("locked_until").desc(nulls_last=True), "pk")
    fields = (
        "user_column",
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
    actions = ("unlock_selected",)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return self.user_search_fields()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lockout]:
        return super().get_queryset(request).select_related("user", "unlocked_by")

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description=_("Unlock selected %(verbose_name_plural)s"), permissions=["unlock"])
    def unlock_selected(self, request: HttpRequest, queryset: QuerySet[Lockout]) -> None:
        lockouts = list(queryset.select_related("user"))
        lifted = sum(services.lift_lockout(lockout.user, by=request.user, request=request) for lockout in lockouts)
        if lifted:
            message = ngettext("Lifted %(count)d lockout.", "Lifted %(count)d lockouts.", lifted)
            self.message_user(request, message % {"count": lifted}, messages.SUCCESS)
        if len(lockouts) > lifted:
            skipped = len(lockouts) - lifted
            message = ngettext(
                "%(count)d selected user was not locked out.", "%(count)d selected users were not locked out.", skipped
            )
            self.message_user(request, message % {"count": skipped}, messages.WARNING)

    @admin.display(description=_("user"), ordering="user")
    def user_column(self, lockout: Lockout) -> str:
        return self.user_link(lockout.user)

    @admin.display(description=_("state"))
    def state(self, lockout: Lockout) -> SafeString:
        if lockout.is_active():
            return badge(ERROR, "✗", _("locked"))
        if lockout.unlocked_at is not None:
            return badge(OK, "✓", _("lifted by an admin"))
        if lockout.locked_until is not None:
            return badge(QUIET, "○", _("expired"))
        return badge(QUIET, "○", _("never locked"))

    @admin.display(description=_("locked until (UTC)"), ordering="locked_until", empty_value="-")
    def locked_until_utc(self, lockout: Lockout) -> str | None:
        return utc(lockout.locked_until) or None

    @admin.display(description=_("time remaining"), empty_value="-")
    def time_remaining(self, lockout: Lockout) -> str | None:
        now = timezone.now()
        if lockout.locked_until is None or not lockout.is_active(now):
            return None
        return timeuntil(lockout.locked_until, now)

    @admin.display(description=_("last wrong code (UTC)"), ordering="last_failure_at", empty_value="-")
    def last_failure(self, lockout: Lockout) -> str | None:
        return utc(lockout.last_failure_at) or None

    @admin.display(description=_("lifted (UTC)"), ordering="unlocked_at", empty_value="-")
    def lifted(self, lockout: Lockout) -> str | None:
        return utc(lockout.unlocked_at) or None

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


@admin.register(StepUpGrant)
class StepUpGrantAdmin(ReadOnlyAdmin):
    list_display = ("user_column", "purpose", "verified", "expires", "used", "challenge")
    list_filter = ("purpose", "verified_at")
    date_hierarchy = "verified_at"
    # Never binding or auth_hash.
    fields = ("user_column", "purpose", "verified", "expires", "used", "challenge")
    readonly_fields = fields

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return self.user_search_fields()

    def get_queryset(self, request: HttpRequest) -> QuerySet[StepUpGrant]:
        return super().get_queryset(request).select_related("user").defer("binding", "auth_hash")

    @admin.display(description=_("user"), ordering="user")
    def user_column(self, grant: StepUpGrant) -> str:
        return self.user_link(grant.user)

    @admin.display(description=_("window starts (UTC)"), ordering="verified_at")
    def verified(self, grant: StepUpGrant) -> str:
        return utc(grant.verified_at)

    @admin.display(description=_("expires (UTC)"), ordering="expires_at")
    def expires(self, grant: StepUpGrant) -> str:
        return utc(grant.expires_at)

    @admin.display(description=_("used (UTC)"), ordering="consumed_at", empty_value="-")
    def used(self, grant: StepUpGrant) -> str | None:
        return utc(grant.consumed_at) or None

    @admin.display(description=_("audit trail"))
    def challenge(self, grant: StepUpGrant) -> str:
        if grant.challenge_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', self.audit_url(challenge_id=grant.challenge_id), grant.challenge_id)
