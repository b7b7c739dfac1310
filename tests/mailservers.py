"""Real mail servers for the delivery tests: an SMTP server (aiosmtpd) and a stand-in for Postmark's HTTP API.

Both run in the test process on 127.0.0.1 with a free port; the Celery worker process sends to them. Each records
what it received and can be told to fail the next sends, the way the real servers do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import CODE_LINE

WAIT_SECONDS = 30.0


def wait_until(
    condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS, details: Callable[[], str] | None = None
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}", pytrace=False)
        time.sleep(0.05)


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def code_in(message: EmailMessage) -> str:
    """The code as the user reads it in the plain-text part of a received email."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    match = CODE_LINE.search(part.get_content())
    assert match, "no code in the text/plain part"
    return match.group(1)


# ---------------------------------------------------------------------------------------------------------------
# SMTP


class RecordingHandler:
    """aiosmtpd handler: accepts mail, or answers with the failures a test scripts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[EmailMessage] = []
        self.refused_data: list[EmailMessage] = []
        self.refused_recipients: list[str] = []
        self.data_failures: list[str] = []
        self.rejected_addresses: dict[str, str] = {}
        # Messages whose DATA was held (hold_next_data) until the client went away: never accepted, never sent.
        self.lost: list[EmailMessage] = []
        self.holds: list[float] = []
        self.holding = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.refused_data.clear()
            self.refused_recipients.clear()
            self.data_failures.clear()
            self.rejected_addresses.clear()
            self.lost.clear()
            self.holds.clear()
            self.holding.clear()

    def hold_next_data(self, seconds: float) -> None:
        """Keep the next DATA unanswered for ``seconds`` (a slow server), then accept it. If the client goes away
        meanwhile, the message is lost, as on a real server: no "250", no delivery. ``holding`` is set while held."""
        with self.lock:
            self.holds.append(seconds)

    def fail_next_data(self, reply: str) -> None:
        """Answer ``reply`` (for example ``451 4.3.0 ...``) to the next DATA instead of accepting the message."""
        with self.lock:
            self.data_failures.append(reply)

    def reject_recipient(self, address: str, reply: str) -> None:
        """Answer ``reply`` (for example ``550 5.1.1 ...``) to every RCPT TO for ``address``."""
        with self.lock:
            self.rejected_addresses[address] = reply

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            reply = self.rejected_addresses.get(address)
            if reply:
                self.refused_recipients.append(address)
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self.lock:
            hold = self.holds.pop(0) if self.holds else None
        if hold is not None:
            self.holding.set()
            try:
                await asyncio.sleep(hold)
            except asyncio.CancelledError:  # aiosmtpd cancels the handler when the connection is lost
                with self.lock:
                    self.lost.append(message)
                raise
        with self.lock:
            if self.data_failures:
                self.refused_data.append(message)
                return self.data_failures.pop(0)
            self.received.append(message)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.received)


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@contextmanager
def running_smtp_server() -> Iterator[SMTPServer]:
    """An SMTP server on a free port of 127.0.0.1; ``handler.reset()`` empties what it recorded."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SMTPServer(controller.hostname, controller.port, handler)
    finally:
        controller.stop()


# ---------------------------------------------------------------------------------------------------------------
# Postmark's HTTP API (a third party's servers: the one thing we stand in for, speaking its real format)

POSTMARK_TOKEN = "server-token-for-tests"


@dataclass
class PostmarkRequest:
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class FakePostmark:
    """Answers ``POST /email`` the way https://postmarkapp.com/developer/api/email-api does."""

    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[PostmarkRequest] = field(default_factory=list)
    scripted: list[tuple[int, dict[str, Any] | str]] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.scripted.clear()
            self.message_ids.clear()

    def answer_next(self, status: int, body: dict[str, Any] | str) -> None:
        with self.lock:
            self.scripted.append((status, body))

    def recorded(self) -> list[PostmarkRequest]:
        with self.lock:
            return list(self.requests)

    def respond(self, request: PostmarkRequest) -> tuple[int, dict[str, Any] | str]:
        with self.lock:
            self.requests.append(request)
            if request.headers.get("x-postmark-server-token") != POSTMARK_TOKEN:
                return 401, {
                    "ErrorCode": 10,
                    "Message": "The Server Token you provided in the X-Postmark-Server-Token "
                    "request header was invalid.",
                }
            if self.scripted:
                return self.scripted.pop(0)
            message_id = str(uuid.uuid4())
            self.message_ids.append(message_id)
        return 200, {
            "To": request.payload["To"],
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }


def _handler_for(fake: FakePostmark) -> type[BaseHTTPRequestHandler]:
    class PostmarkHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            headers = {key.lower(): value for key, value in self.headers.items()}
            if self.path != "/email":
                status, body = 404, {"ErrorCode": 404, "Message": "Not found"}
            else:
                status, body = fake.respond(PostmarkRequest(self.path, headers, payload))
            raw = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return PostmarkHandler


@contextmanager
def running_fake_postmark() -> Iterator[FakePostmark]:
    """Postmark's API on a free port of 127.0.0.1, served from a thread; ``reset()`` empties what it recorded."""
    fake = FakePostmark()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-postmark", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
