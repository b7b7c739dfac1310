"""What the engine takes from a request: client IP, user agent and the session or credential binding."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any

from django_emailotp.conf import app_settings
from django_emailotp.crypto import binding_hashes

# A random nonce kept in the session. Binding to it, not to the session key, works with every session engine
# (signed cookies change their key whenever the data changes) and survives login()'s key rotation, while
# logout (which flushes the session) ends it.
SESSION_BINDING_KEY = "_emailotp_binding"
USER_AGENT_MAX_LENGTH = 512


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: Any) -> str | None:
    """REMOTE_ADDR, unless ``EMAIL_OTP_TRUSTED_PROXY_COUNT`` proxies append to X-Forwarded-For.

    With N trusted proxies the client is the N-th entry from the right: the one the outermost trusted proxy
    appended. Entries further left are whatever the client chose to send and are never trusted.
    """
    meta = request.META
    remote = _valid_ip(meta.get("REMOTE_ADDR", "") or "")
    proxies = app_settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < proxies:
        return remote
    return _valid_ip(forwarded[-proxies]) or remote


def _basic_user(request: Any) -> Any | None:
    """The user DRF's BasicAuthentication (or a subclass) authenticated this request as, or None."""
    authenticator = getattr(request, "successful_authenticator", None)  # only a DRF Request has one
    if authenticator is None:
        return None
    from rest_framework.authentication import BasicAuthentication

    return request.user if isinstance(authenticator, BasicAuthentication) else None


def _credential(request: Any, *, create: bool) -> str:
    # DRF sets request.auth for token-style authentication; bind to that credential rather than a session.
    auth = getattr(request, "auth", None)
    if auth is not None:
        return "credential:" + str(getattr(auth, "key", None) or auth)
    # HTTP Basic sends the password with every request and keeps no session (a new one each time would orphan every
    # code). Bind to what the password was checked against: the user and their stored password hash, which a
    # password change (even to the same password: a new salt) replaces. The password itself is never hashed here.
    basic_user = _basic_user(request)
    if basic_user is not None:
        return f"basic:{basic_user.pk}:{basic_user.password}"
    session = getattr(request, "session", None)
    if session is None:
        return ""
    nonce = session.get(SESSION_BINDING_KEY)
    if nonce is None and create:
        nonce = session[SESSION_BINDING_KEY] = secrets.token_urlsafe(32)
    return f"session:{nonce}" if nonce else ""


def renew_session_binding(request: Any) -> None:
    """Give the session a new binding nonce (and forget the metadata computed with the old one)."""
    request.session[SESSION_BINDING_KEY] = secrets.token_urlsafe(32)
    vars(request).pop(_CACHE_ATTR, None)


@dataclass(frozen=True)
class RequestMeta:
    ip_address: str | None = None
    user_agent: str = ""
    binding: str = ""
    # ``binding`` and its hashes under SECRET_KEY_FALLBACKS, so rotating the key does not orphan live challenges.
    accepted_bindings: tuple[str, ...] = ("",)

    @classmethod
    def from_request(cls, request: Any | None, *, create_binding: bool = False) -> RequestMeta:
        """The request's metadata, computed once per request object (the HMACs are not free).

        Cached in the object's own ``__dict__``: DRF's Request would otherwise hand out the HttpRequest's entry,
        computed before DRF authenticated a token.
        """
        if request is None:
            return EMPTY_META
        cached: RequestMeta | None = vars(request).get(_CACHE_ATTR)
        if cached is not None and (cached.binding or not create_binding):
            return cached
        credential = _credential(request, create=create_binding)
        bindings = binding_hashes(credential) if credential else ("",)
        meta = cls(
            ip_address=client_ip(request),
            user_agent=str(request.META.get("HTTP_USER_AGENT", ""))[:USER_AGENT_MAX_LENGTH],
            binding=bindings[0],
            accepted_bindings=bindings,
        )
        vars(request)[_CACHE_ATTR] = meta
        return meta


EMPTY_META = RequestMeta()
_CACHE_ATTR = "_emailotp_request_meta"
