"""A test-only app for the worker processes: it writes each delivery signal they send to the file that
``EMAIL_OTP_TEST_SIGNAL_LOG`` names, one JSON object a line, so a test can count them from its own process."""

from __future__ import annotations

import json
import os
from typing import Any

from django.apps import AppConfig


def _write(record: dict[str, Any]) -> None:
    with open(os.environ["EMAIL_OTP_TEST_SIGNAL_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def record_failure(sender: Any, challenge: Any, error: str, transient: bool, final: bool, **kwargs: Any) -> None:
    _write({"signal": "challenge_delivery_failed", "challenge": str(challenge.pk), "error": error, "final": final})


def record_sent(sender: Any, challenge: Any, message_id: str, **kwargs: Any) -> None:
    _write({"signal": "challenge_sent", "challenge": str(challenge.pk)})


class SignalProbeConfig(AppConfig):
    name = "tests.signal_probe"
    label = "emailotp_signal_probe"

    def ready(self) -> None:
        from django_emailotp import signals

        signals.challenge_delivery_failed.connect(record_failure, dispatch_uid="signal_probe_failed")
        signals.challenge_sent.connect(record_sent, dispatch_uid="signal_probe_sent")


def recorded(path: str) -> list[dict[str, Any]]:
    """What a worker wrote to ``path`` so far."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]
