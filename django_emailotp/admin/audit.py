"""The audit trail in the admin: read-only rows (never a full session hash), filters and search, the CSV export
(ISO-8601 timestamps, spreadsheet formulas escaped), and the URL of the activity page, which hangs off it."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_emailotp.admin.activity import activity_page
from django_emailotp.admin.common import ReadOnlyAdmin, utc_column
from django_emailotp.models import AuditEvent, Challenge

# How much of an audit row's session hash is shown: enough to tell sessions apart and follow one, not the full
# keyed hash (which is also what a challenge issued from that session stores as its binding).
SESSION_PREFIX = 12
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


def csv_cell(value: object) -> str:
    """The text of one CSV cell, with a leading apostrophe if a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    """A file-like object for csv.writer that hands each written line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


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

    time = utc_column("created_at", _("time (UTC)"))

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

    def get_urls(self) -> list[URLPattern]:
        # Before the default patterns: "<path:object_id>/" would otherwise take "activity/".
        activity = path("activity/", self.admin_site.admin_view(self.activity_view), name="emailotp_activity")
        return [activity, *super().get_urls()]

    def activity_view(self, request: HttpRequest) -> TemplateResponse:
        """The activity page (admin/activity.py), behind the audit trail's view permission."""
        return activity_page(self, request)
