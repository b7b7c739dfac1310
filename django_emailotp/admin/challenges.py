"""Challenges in the admin: read-only, with status and delivery badges, the last delivery error, a "stuck or failed
delivery" filter and a link to each one's audit trail. The code hash and the binding are never shown or even
loaded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_emailotp.admin.common import ERROR, OK, QUIET, WARNING, ReadOnlyAdmin, badge, utc_column
from django_emailotp.models import Challenge, ChallengeStatus, DeliveryStatus

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


UNFINISHED = (DeliveryStatus.QUEUED, DeliveryStatus.RETRYING)
UNDELIVERED = (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.REJECTED)


class DeliveryProblemFilter(admin.SimpleListFilter):
    """What docs/operators.md tells an operator to do something about (see "Stuck or failed deliveries")."""

    title = _("stuck or failed delivery")
    parameter_name = "delivery_problem"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [
            ("stuck", _("stuck: queued or retrying past its deadline")),
            ("lost", _("never sent before the code expired")),
            ("failed", _("failed, bounced or rejected")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Challenge]) -> QuerySet[Challenge]:
        now = timezone.now()
        unfinished = Q(delivery_status__in=UNFINISHED, send_email=True)
        if self.value() == "stuck":
            live = Q(status=ChallengeStatus.PENDING, expires_at__gt=now)
            return queryset.filter(unfinished & live, delivery_deadline__lte=now)
        if self.value() == "lost":
            ended = Q(expires_at__lte=now) | ~Q(status=ChallengeStatus.PENDING)
            return queryset.filter(unfinished & ended, sent_at__isnull=True)
        if self.value() == "failed":
            return queryset.filter(delivery_status__in=UNDELIVERED)
        return queryset


@admin.register(Challenge)
class ChallengeAdmin(ReadOnlyAdmin):
    list_display = (
        "created",
        "user_column",
        "purpose",
        "status_badge",
        "delivery_badge",
        "delivery_error",
        "attempts_used",
        "expires",
        "consumed",
        "esp_message_id",
    )
    list_filter = (DeliveryProblemFilter, "status", "delivery_status", "purpose", "created_at")
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
        "delivery_error",
        "deadline",
        "sent",
        "esp_message_id",
        "ip_address",
        "user_agent",
        "audit_trail",
    )
    readonly_fields = fields
    list_per_page = 50

    created = utc_column("created_at", _("created (UTC)"))
    expires = utc_column("expires_at", _("expires (UTC)"))
    consumed = utc_column("consumed_at", _("consumed (UTC)"), optional=True)
    sent = utc_column("sent_at", _("sent (UTC)"), optional=True)
    deadline = utc_column("delivery_deadline", _("delivery deadline (UTC)"), optional=True)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*self.user_search_fields(), "email", "esp_message_id", "ip_address"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Challenge]:
        return super().get_queryset(request).select_related("user").defer("code_hash", "binding")

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
