"""Admin screens, a module per screen: the audit trail (read-only, CSV export) in ``audit``, challenges (read-only,
never a hash) in ``challenges``, lockouts (unlock) in ``lockouts``, step-up grants (read-only) in ``grants``, and the
activity page in ``activity``, over ``common`` (what they share).

The admin only reads and translates: lifting a lockout goes through :func:`services.lift_lockout`, and the counts on
the activity page come from :mod:`django_emailotp.stats`. Importing this package (Django's admin autodiscovery does)
registers every model admin.
"""

from __future__ import annotations

from django_emailotp.admin.activity import chart
from django_emailotp.admin.audit import AuditEventAdmin, csv_cell
from django_emailotp.admin.challenges import ChallengeAdmin
from django_emailotp.admin.common import EmailOTPAdminMixin, ReadOnlyAdmin, badge, utc
from django_emailotp.admin.grants import StepUpGrantAdmin
from django_emailotp.admin.lockouts import LockoutAdmin, LockoutStateFilter

__all__ = [
    "AuditEventAdmin",
    "ChallengeAdmin",
    "EmailOTPAdminMixin",
    "LockoutAdmin",
    "LockoutStateFilter",
    "ReadOnlyAdmin",
    "StepUpGrantAdmin",
    "badge",
    "chart",
    "csv_cell",
    "utc",
]
