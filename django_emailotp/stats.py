"""Counts behind the admin's activity page, read from the audit trail.

Plain functions, each one aggregate query: the database groups and counts, Python only fills in the quiet days.
Days are UTC calendar days, whatever ``TIME_ZONE`` says, like every time in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from django_emailotp.models import AuditEvent, AuditEventType, AuditOutcome

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Series:
    """One line of the activity page: which audit rows it counts."""

    key: str
    label: str | Promise
    condition: Q


SERIES: tuple[Series, ...] = (
    Series("issued", _("Codes issued"), Q(event=AuditEventType.CHALLENGE_ISSUED)),
    Series("verified", _("Codes verified"), Q(event=AuditEventType.VERIFY_SUCCEEDED)),
    Series("failed", _("Failed verifications"), Q(event=AuditEventType.VERIFY_FAILED)),
    Series("rate_limited", _("Refused by a rate limit"), Q(event=AuditEventType.RATE_LIMITED)),
    Series("locked_out", _("Lockouts"), Q(event=AuditEventType.LOCKED_OUT)),
    Series(
        "delivery_failed",
        _("Delivery failures"),
        # A send that failed for good, a broker that could not be reached, or an ESP reporting a bounce,
        # rejection or complaint (a failure outcome on a delivery status row).
        Q(event__in=[AuditEventType.DELIVERY_FAILED, AuditEventType.DELIVERY_UNAVAILABLE])
        | Q(event=AuditEventType.DELIVERY_STATUS, outcome=AuditOutcome.FAILURE),
    ),
)

# What makes a client a "source of failures": wrong or unusable codes, and requests a rate limit refused.
FAILURE_EVENTS = Q(event__in=[AuditEventType.VERIFY_FAILED, AuditEventType.RATE_LIMITED])


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]

    def __getitem__(self, key: str) -> int:
        return self.counts[key]


@dataclass(frozen=True)
class FailureSource:
    """An IP address or a user with its number of failures in the period and the time of the latest."""

    failures: int
    last_seen: datetime
    ip_address: str | None = None
    user_id: Any = None
    username: str = ""


def period(days: int = DEFAULT_DAYS, *, now: datetime | None = None) -> tuple[date, date]:
    """The first and last UTC day of the ``days`` days that end today."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return today - timedelta(days=days - 1), today


def _bounds(days: int, now: datetime | None) -> tuple[date, date, datetime, datetime]:
    first, last = period(days, now=now)
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return first, last, start, end


def daily_counts(days: int = DEFAULT_DAYS, *, now: datetime | None = None) -> list[DayCounts]:
    """For each of the last ``days`` UTC days (oldest first, today included), how many rows each series counts."""
    first, _last, start, end = _bounds(days, now)
    rows = (
        AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .filter(Q.create([series.condition for series in SERIES], connector=Q.OR))
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**{series.key: Count("pk", filter=series.condition) for series in SERIES})
        .order_by("day")
    )
    found: dict[date, dict[str, Any]] = {row["day"]: dict(row) for row in rows}
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = found.get(day, {})
        result.append(DayCounts(day, {series.key: int(row.get(series.key, 0)) for series in SERIES}))
    return result


def totals(days: list[DayCounts]) -> dict[str, int]:
    return {series.key: sum(day[series.key] for day in days) for series in SERIES}


def top_failure_ips(days: int = DEFAULT_DAYS, *, limit: int = 10, now: datetime | None = None) -> list[FailureSource]:
    """The IP addresses with the most failed verifications and rate-limit refusals in the period, most first."""
    _first, _last, start, end = _bounds(days, now)
    rows = (
        AuditEvent.objects.filter(FAILURE_EVENTS, created_at__gte=start, created_at__lt=end, ip_address__isnull=False)
        .values("ip_address")
        .annotate(failures=Count("pk"), last_seen=Max("created_at"))
        .order_by("-failures", "-last_seen", "ip_address")[:limit]
    )
    return [FailureSource(row["failures"], row["last_seen"], ip_address=row["ip_address"]) for row in rows]


def top_failure_users(days: int = DEFAULT_DAYS, *, limit: int = 10, now: datetime | None = None) -> list[FailureSource]:
    """The users with the most failed verifications and rate-limit refusals in the period, most first."""
    _first, _last, start, end = _bounds(days, now)
    username = f"user__{get_user_model().USERNAME_FIELD}"
    rows = (
        AuditEvent.objects.filter(FAILURE_EVENTS, created_at__gte=start, created_at__lt=end, user__isnull=False)
        .values("user_id", username)
        .annotate(failures=Count("pk"), last_seen=Max("created_at"))
        .order_by("-failures", "-last_seen", "user_id")[:limit]
    )
    return [
        FailureSource(row["failures"], row["last_seen"], user_id=row["user_id"], username=str(row[username]))
        for row in rows
    ]
