"""Security headers on every response, and the bearer-token gate for admin actions.

The pages use no JavaScript at all, so the policy can be strict: nothing but our own stylesheet and
images (plus ``data:`` URIs) may load, forms post only to us, and nobody may frame us.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware: no extra task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                message["headers"] = headers + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


_OURS = {k for k, _ in SECURITY_HEADERS}


def admin_token_of(settings: Any) -> str | None:
    """The configured token (plain or pydantic SecretStr); None or blank means admin is off."""
    token = getattr(settings, "admin_token", None)
    if token is None:
        return None
    if hasattr(token, "get_secret_value"):
        token = token.get_secret_value()
    token = str(token).strip()
    return token or None


def require_admin(request: Request) -> None:
    """Dependency: 404 when no token is configured, 401 without a bearer token, 403 with a wrong one."""
    state = request.app.state.tracker
    token = admin_token_of(state.app.settings)
    if token is None:
        raise HTTPException(status_code=404, detail="Not Found")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(status_code=401, detail="bearer token required", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(status_code=403, detail="invalid token")
