"""Step-up grants in the admin: read-only windows, when they were used, and the audit trail of the code that opened
each one. The binding and the auth hash are never shown or even loaded."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_emailotp.admin.common import ReadOnlyAdmin, utc_column
from django_emailotp.models import StepUpGrant


@admin.register(StepUpGrant)
class StepUpGrantAdmin(ReadOnlyAdmin):
    list_display = ("user_column", "purpose", "verified", "expires", "used", "challenge")
    list_filter = ("purpose", "verified_at")
    date_hierarchy = "verified_at"
    # Never binding or auth_hash.
    fields = ("user_column", "purpose", "verified", "expires", "used", "challenge")
    readonly_fields = fields

    verified = utc_column("verified_at", _("window starts (UTC)"))
    expires = utc_column("expires_at", _("expires (UTC)"))
    used = utc_column("consumed_at", _("used (UTC)"), optional=True)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return self.user_search_fields()

    def get_queryset(self, request: HttpRequest) -> QuerySet[StepUpGrant]:
        return super().get_queryset(request).select_related("user").defer("binding", "auth_hash")

    @admin.display(description=_("audit trail"))
    def challenge(self, grant: StepUpGrant) -> str:
        if grant.challenge_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', self.audit_url(challenge_id=grant.challenge_id), grant.challenge_id)
