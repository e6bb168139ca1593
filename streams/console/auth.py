"""Who may see the console and act from it: loopback by default, a token otherwise.

On a loopback bind (the default, ``web_bind = "127.0.0.1"``) only this machine reaches the pages. On any other
bind a token is required (``web_token`` / ``REVERIFY_WEB_TOKEN``) and ``reverify up`` / ``reverify console``
refuse to start without one. When a token is set, every page and API call but ``/healthz`` and ``/readyz``
needs it: ``Authorization: Bearer TOKEN``, or the page opened once as ``/?token=TOKEN``, which sets an HttpOnly,
SameSite=Strict cookie and redirects to the same page without the token in its address. Actions (POST) must
also come from the console's own pages (the ``Origin`` a browser sends names this host), so a page on another
site cannot make a browser act here (cross-site request forgery, OWASP's "verifying origin with standard
headers"). Every answer carries a Content-Security-Policy allowing only this origin's scripts and styles.

>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
(True, True, True, False)
>>> bind_problem(Settings(web_bind="0.0.0.0"))
"web_bind = '0.0.0.0' is not loopback: set web_token (REVERIFY_WEB_TOKEN) to a secret the console will require"
>>> bind_problem(Settings(web_bind="0.0.0.0", web_token="s3cret")) is None
True
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from reverify.streams.settings import Settings

COOKIE = "reverify_token"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` (a host name or address) is reachable from this machine only."""
    if bind.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def bind_problem(settings: Settings) -> str | None:
    """Why the console must not start with ``settings`` (a non-loopback bind without a token), else None."""
    if settings.web_port and not is_loopback(settings.web_bind) and not settings.web_token:
        return (
            f"web_bind = {settings.web_bind!r} is not loopback: set web_token (REVERIFY_WEB_TOKEN) "
            "to a secret the console will require"
        )
    return None


def _same(supplied: str | None, token: str) -> bool:
    return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())  # type: ignore[union-attr]


def _supplied(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def _same_origin(request: web.Request) -> bool:
    """A POST from a browser names the page's origin; it must be this host (programs send none: allowed)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return not source
    return urlsplit(source).netloc == request.host


def _denied(request: web.Request) -> web.Response:
    if request.path.startswith("/api/") or "text/html" not in request.headers.get("Accept", ""):
        return web.json_response({"error": "a token is required: Authorization: Bearer TOKEN"}, status=401)
    text = (
        "<!doctype html><title>reverify: token required</title><p>This console needs its token: open "
        "<code>/?token=TOKEN</code> once (web_token / REVERIFY_WEB_TOKEN).</p>"
    )
    return web.Response(text=text, status=401, content_type="text/html")


def access_middleware(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The aiohttp middleware guarding every route but :data:`PUBLIC_PATHS` (module docstring)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        if token:
            offered = request.query.get("token")
            if offered is not None and request.method == "GET" and _same(offered, token):
                rest = {k: v for k, v in request.query.items() if k != "token"}
                target = request.path + ("?" + urlencode(rest) if rest else "")
                response = web.HTTPSeeOther(target)
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
                return response
            if not _same(_supplied(request), token):
                return _denied(request)
        if request.method == "POST" and not _same_origin(request):
            return web.json_response({"error": "cross-site request refused"}, status=403)
        response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return guard
