"""Who may read the dashboard: on loopback anyone on this machine; beyond it, only a browser or script
holding the token (EDGEFARM_DASHBOARD_TOKEN or the first line of --token-file), like the agent's bearer
token. A browser opens `/?token=...` once and keeps it in an HttpOnly cookie; a script sends
`Authorization: Bearer ...`. /health stays open, so a supervisor can probe readiness without the token.
With a token or without, a request must name this dashboard in its Host header (loopback, --host, or a name
in $EDGEFARM_DASHBOARD_HOSTS): a web page whose name an attacker rebinds to 127.0.0.1 (DNS rebinding) is
refused."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from controller.errors import FarmError, UsageError
from core.net import is_loopback

TOKEN_ENV = "EDGEFARM_DASHBOARD_TOKEN"
HOSTS_ENV = "EDGEFARM_DASHBOARD_HOSTS"     # more names the dashboard answers to (commas or spaces between)
WILDCARDS = ("", "0.0.0.0", "::")
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
            path = same_site(scope.get("raw_path") or quote(scope["path"]).encode())
            location = "/" if path is None else path + (f"?{rest}" if rest else "")
            await _send(send, 303, b"", [(b"location", location.encode()),
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


def same_site(raw_path: bytes) -> str | None:
    """The request's own path as it came (still percent-encoded) when the token's redirect may send the
    browser there: a path on this site, a single '/' then printable ASCII; None for anything else, such as
    '//host' or '/\\host', which a browser takes for another site (the redirect then goes to '/')."""
    path = raw_path.decode("latin-1")
    if not path.startswith("/") or path.startswith(("//", "/\\")) or not all("!" <= c <= "~" for c in path):
        return None
    return path


def host_name(value: str) -> str | None:
    """The name in a Host header, lower case, without its port, brackets or final dot; None when the
    header is not a host with an optional port."""
    text = value.strip().lower()
    if text.startswith("["):
        name, close, port = text[1:].partition("]")
        if not close or (port and not port.startswith(":")):
            return None
        port = port[1:]
    elif text.count(":") == 1:
        name, _, port = text.partition(":")
    else:
        name, port = text, ""   # a name, or an IPv6 address without brackets ('::1')
    if port and not (port.isascii() and port.isdigit()):
        return None
    return name.rstrip(".")


def bound_names(host: str) -> list[str]:
    """The names a dashboard bound to `host` answers to besides loopback's: that name (or address), or,
    bound to every address (0.0.0.0, ::), this machine's name and the addresses of its interfaces."""
    if host.strip("[]") not in WILDCARDS:
        return [host]
    names = [socket.gethostname(), f"{socket.gethostname()}.local"]
    try:
        import ifaddr

        names += [ip.ip if isinstance(ip.ip, str) else ip.ip[0] for a in ifaddr.get_adapters() for ip in a.ips]
    except (ImportError, OSError):
        pass
    return names


class HostMiddleware:
    """ASGI middleware: every request but /health must name this dashboard in its Host header (a loopback
    name, `names`, or one in $EDGEFARM_DASHBOARD_HOSTS; any port), else 400 with one sentence."""

    def __init__(self, app, names: Iterable[str] = ()) -> None:
        self.app = app
        more = os.environ.get(HOSTS_ENV, "").replace(",", " ").split()
        self.names = {host_name(n) for n in (*names, *more)} - {None}

    def allows(self, value: str) -> bool:
        name = host_name(value)
        return name is not None and (is_loopback(name) or name in self.names)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            value = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"host"), None)
            if value is not None and not self.allows(value):
                shown = value if len(value) <= 80 else f"{value[:80]}..."
                text = (f"Host header '{shown}' is not this dashboard's; open it by 127.0.0.1, localhost or "
                        f"[::1] (or the name given to --host, or one listed in ${HOSTS_ENV})\n")
                await _send(send, 400, text.encode(), [(b"content-type", b"text/plain; charset=utf-8")])
                return
        await self.app(scope, receive, send)


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
