"""The example site's Celery app: ``celery -A example_project worker``."""

from __future__ import annotations

import os

try:
    from celery import Celery
except ImportError:  # the embedded default runs without Celery
    app = None
else:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    app = Celery("example_project")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()
