"""Who may read the dashboard: on loopback anyone on this machine; beyond it, only a browser or script
holding the token (EDGEFARM_DASHBOARD_TOKEN or the first line of --token-file), like the agent's bearer
token. A browser opens `/?token=...` once and keeps it in an HttpOnly cookie; a script sends
`Authorization: Bearer ...`. /health stays open, so a supervisor can probe readiness without the token."""

from __future__ import annotations

import hashlib
import hmac
import os
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from controller.errors import FarmError, UsageError
from core.net import is_loopback

TOKEN_ENV = "EDGEFARM_DASHBOARD_TOKEN"
COOKIE = "edgefarm_dashboard"
OPEN_PATHS = ("/health",)


def read_token(path: Path | None) -> str | None:
    """The token: the first line of `path`, else $EDGEFARM_DASHBOARD_TOKEN, else none."""
    if path is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise FarmError(f"cannot read the token file {path} ({exc.strerror}); give a readable file whose first "
                            "line is the token") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise UsageError(f"the token file {path} is empty; put the token on its first line")
        return token
    return os.environ.get(TOKEN_ENV) or None


def check_binding(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (a UsageError, one sentence)."""
    if not is_loopback(host) and not token:
        raise UsageError(f"the dashboard would serve the results store to anyone who can reach {host} without a "
                         f"token; set {TOKEN_ENV} or pass --token-file FILE, or bind --host 127.0.0.1")


class TokenMiddleware:
    """ASGI middleware: every request but /health must carry the token (header, cookie or ?token=)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token
        self.cookie = hashlib.sha256(f"edgefarm-dashboard:{token}".encode()).hexdigest()   # not the token itself

    def _ok(self, given: str | None, expected: str | None = None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), (expected or self.token).encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        cookie = SimpleCookie(headers.get("cookie", ""))
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given_query = next((v for k, v in query if k == "token"), None)
        if self._ok(given_query):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            await _send(send, 303, b"", [(b"location", (scope["path"] + (f"?{rest}" if rest else "")).encode()),
                                         (b"set-cookie", f"{COOKIE}={self.cookie}; HttpOnly; SameSite=Strict; "
                                                         "Path=/".encode())])
            return
        if self._ok(auth[7:] if auth.lower().startswith("bearer ") else None) or \
                self._ok(cookie[COOKIE].value if COOKIE in cookie else None, self.cookie):
            await self.app(scope, receive, send)
            return
        text = ("This dashboard needs its token: open this address with ?token=TOKEN once (the browser keeps it "
                "in a cookie), or send the header 'Authorization: Bearer TOKEN'.\n")
        await _send(send, 401, text.encode(), [(b"content-type", b"text/plain; charset=utf-8")])


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
