"""The admin's activity page: the last 30 days of email-code activity as SVG bar charts and a table, and the IP
addresses and users with the most failures, each linked to their audit rows. The counts come from
:mod:`django_emailotp.stats`; this module only lays them out."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_emailotp import stats
from django_emailotp.admin.common import ReadOnlyAdmin, utc
from django_emailotp.models import AuditEvent

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


def activity_page(model_admin: ReadOnlyAdmin, request: HttpRequest) -> TemplateResponse:
    """The page, for the audit trail's admin (whose view permission it needs and whose links it uses)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    now = timezone.now()
    days = stats.daily_counts(now=now)
    first, last = days[0].day, days[-1].day
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "title": _("Email code activity"),
        "first_day": first,
        "last_day": last,
        "charts": [chart(series, days) for series in stats.SERIES],
        "series": stats.SERIES,
        "rows": [(day.day, [day[series.key] for series in stats.SERIES]) for day in days],
        "totals": [stats.totals(days)[series.key] for series in stats.SERIES],
        "top_ips": [
            (source, model_admin.audit_url(ip_address=source.ip_address), utc(source.last_seen))
            for source in stats.top_failure_ips(now=now)
        ],
        "top_users": [
            (source, model_admin.audit_url(user__id__exact=source.user_id), utc(source.last_seen))
            for source in stats.top_failure_users(now=now)
        ],
        "changelist_url": model_admin.admin_url(AuditEvent, "changelist"),
    }
    request.current_app = model_admin.admin_site.name
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
