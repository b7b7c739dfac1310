"""The activity page's numbers (django_emailotp.stats), from audit rows written at chosen times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from django_emailotp import stats
from django_emailotp.models import AuditEvent, AuditEventType, AuditOutcome

NOW = datetime(2025, 3, 30, 15, 0, tzinfo=UTC)
FIRST = date(2025, 3, 1)
ZERO = {"issued": 0, "verified": 0, "failed": 0, "rate_limited": 0, "locked_out": 0, "delivery_failed": 0}

pytestmark = pytest.mark.django_db


def event(
    kind: AuditEventType, at: datetime, outcome: AuditOutcome = AuditOutcome.FAILURE, **fields: Any
) -> AuditEvent:
    return AuditEvent.objects.create(event=kind, outcome=outcome, created_at=at, **fields)


def at(day: int, hour: int = 12, *args: int) -> datetime:
    return datetime(2025, 3, day, hour, *args, tzinfo=UTC)


def test_daily_counts_cover_thirty_utc_days_ending_today_in_one_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        days = stats.daily_counts(now=NOW)

    assert [day.day for day in days] == [FIRST + timedelta(days=offset) for offset in range(30)]
    assert days[-1].day == date(2025, 3, 30)
    assert all(day.counts == ZERO for day in days)
    assert stats.period(now=NOW) == (FIRST, date(2025, 3, 30))


def test_daily_counts_count_each_series_on_its_utc_day() -> None:
    event(AuditEventType.CHALLENGE_ISSUED, at(2), AuditOutcome.SUCCESS)
    event(AuditEventType.CHALLENGE_ISSUED, at(2, 23, 59, 59), AuditOutcome.SUCCESS)
    # 01:30 on 3 March in UTC+05:00 is 20:30 on 2 March in UTC: it counts on the 2nd.
    event(AuditEventType.CHALLENGE_ISSUED, datetime(2025, 3, 3, 1, 30, tzinfo=timezone(timedelta(hours=5))))
    event(AuditEventType.VERIFY_SUCCEEDED, at(2), AuditOutcome.SUCCESS)
    event(AuditEventType.VERIFY_FAILED, at(3), reason="invalid_code")
    event(AuditEventType.VERIFY_FAILED, at(3), reason="expired")
    event(AuditEventType.CHALLENGE_BURNED, at(3))  # not a series of its own
    event(AuditEventType.RATE_LIMITED, at(30, 14), reason="verify_per_ip")
    event(AuditEventType.LOCKED_OUT, at(30, 14))
    event(AuditEventType.DELIVERY_FAILED, at(10), reason="permanent")
    event(AuditEventType.DELIVERY_UNAVAILABLE, at(10), reason="broker_unreachable")
    event(AuditEventType.DELIVERY_STATUS, at(10), AuditOutcome.FAILURE, reason="bounced")
    event(AuditEventType.DELIVERY_STATUS, at(10), AuditOutcome.SUCCESS, reason="delivered")
    event(AuditEventType.DELIVERY_RETRY, at(10), reason="transient")  # a retry is not a failure yet
    event(AuditEventType.CHALLENGE_SENT, at(10), AuditOutcome.SUCCESS)

    days = {day.day: day.counts for day in stats.daily_counts(now=NOW)}

    assert days[date(2025, 3, 2)] == ZERO | {"issued": 3, "verified": 1}
    assert days[date(2025, 3, 3)] == ZERO | {"failed": 2}
    assert days[date(2025, 3, 10)] == ZERO | {"delivery_failed": 3}
    assert days[date(2025, 3, 30)] == ZERO | {"rate_limited": 1, "locked_out": 1}
    quiet = set(days) - {date(2025, 3, 2), date(2025, 3, 3), date(2025, 3, 10), date(2025, 3, 30)}
    assert len(quiet) == 26
    assert all(days[day] == ZERO for day in quiet)
    assert stats.totals(stats.daily_counts(now=NOW)) == {
        "issued": 3,
        "verified": 1,
        "failed": 2,
        "rate_limited": 1,
        "locked_out": 1,
        "delivery_failed": 3,
    }


def test_daily_counts_stop_at_the_edges_of_the_window() -> None:
    event(AuditEventType.CHALLENGE_ISSUED, at(1, 0), AuditOutcome.SUCCESS)  # first instant of the first day
    event(AuditEventType.CHALLENGE_ISSUED, at(1, 0) - timedelta(microseconds=1), AuditOutcome.SUCCESS)
    event(AuditEventType.CHALLENGE_ISSUED, at(30, 23, 59, 59, 999999), AuditOutcome.SUCCESS)
    event(AuditEventType.CHALLENGE_ISSUED, at(31, 0), AuditOutcome.SUCCESS)  # tomorrow

    days = stats.daily_counts(now=NOW)

    assert days[0].day == FIRST
    assert days[0]["issued"] == 1
    assert days[-1]["issued"] == 1
    assert sum(day["issued"] for day in days) == 2


def test_daily_counts_default_to_the_current_time_and_take_a_length() -> None:
    event(AuditEventType.VERIFY_FAILED, at(29))
    event(AuditEventType.VERIFY_FAILED, at(23))
    with time_machine.travel(NOW, tick=False):
        week = stats.daily_counts(7)
        month = stats.daily_counts()

    assert [day.day for day in week] == [date(2025, 3, 24) + timedelta(days=offset) for offset in range(7)]
    assert [day["failed"] for day in week] == [0, 0, 0, 0, 0, 1, 0]
    assert sum(day["failed"] for day in month) == 2


def test_top_failure_ips_rank_failed_verifications_and_rate_limits(django_assert_num_queries: Any) -> None:
    for _ in range(3):
        event(AuditEventType.VERIFY_FAILED, at(5), ip_address="203.0.113.9")
    event(AuditEventType.RATE_LIMITED, at(6), ip_address="203.0.113.9")
    event(AuditEventType.VERIFY_FAILED, at(7), ip_address="2001:db8::1")
    event(AuditEventType.VERIFY_FAILED, at(8), ip_address="2001:db8::1")
    event(AuditEventType.VERIFY_FAILED, at(9), ip_address="198.51.100.4")
    event(AuditEventType.VERIFY_FAILED, at(9), ip_address="198.51.100.5")
    event(AuditEventType.VERIFY_FAILED, at(9))  # no IP (a worker or a shell): not a source
    event(AuditEventType.CHALLENGE_ISSUED, at(9), AuditOutcome.SUCCESS, ip_address="192.0.2.1")  # not a failure
    event(AuditEventType.VERIFY_FAILED, at(1) - timedelta(seconds=1), ip_address="192.0.2.2")  # before the window

    with django_assert_num_queries(1):
        sources = stats.top_failure_ips(now=NOW, limit=3)

    assert [(source.ip_address, source.failures, source.last_seen) for source in sources] == [
        ("203.0.113.9", 4, at(6)),
        ("2001:db8::1", 2, at(8)),
        # Equal counts and times: by address.
        ("198.51.100.4", 1, at(9)),
    ]


def test_top_failure_users_name_the_user(user: Any, other_user: Any, django_assert_num_queries: Any) -> None:
    event(AuditEventType.VERIFY_FAILED, at(3), user=other_user)
    event(AuditEventType.VERIFY_FAILED, at(4), user=user)
    event(AuditEventType.RATE_LIMITED, at(5), user=user)
    event(AuditEventType.VERIFY_SUCCEEDED, at(5), AuditOutcome.SUCCESS, user=other_user)
    event(AuditEventType.LOCKOUT_LIFTED, at(5), AuditOutcome.SUCCESS, user=other_user)
    event(AuditEventType.VERIFY_FAILED, at(5), ip_address="192.0.2.1")  # no user: not a user source

    with django_assert_num_queries(1):
        sources = stats.top_failure_users(now=NOW)

    assert [(source.username, source.user_id, source.failures, source.last_seen) for source in sources] == [
        ("alice", user.pk, 2, at(5)),
        ("bob", other_user.pk, 1, at(3)),
    ]
