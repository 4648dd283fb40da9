"""Who may see the dashboard: whoever holds its token, as with Jupyter.

The token is random (`secrets.token_urlsafe`) and printed in the URL. A request carries it as
`?token=` (the URL printed), as the cookie set in answer to that first request (so links and the
page's own requests work without it in every URL), or as `Authorization: token <token>`. Any
other request is refused with 403 before it reaches a page: other users of the machine, or a web
page in the browser trying to read localhost, see nothing. The cookie is HttpOnly (scripts cannot
read it) and SameSite=Strict (no other site's page makes the browser send it).
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import CookieError, SimpleCookie
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

TOKEN_BYTES = 32  # of randomness: 43 URL-safe characters
TOKEN_PARAMETER = "token"
COOKIE_NAME = "patas_dashboard_token"
REFUSED = b"403 Forbidden: open the dashboard with the URL (and its token) that patas dashboard printed.\n"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class TokenGate:
    """ASGI middleware: passes a request on only if it carries the token."""

    def __init__(self, app: App, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)  # start-up and shut-down: no request
            return
        from_query = self._matches(_query_token(scope))
        if not (from_query or self._matches(_cookie_token(scope)) or self._matches(_header_token(scope))):
            await _refuse(scope, send)
            return
        await self.app(scope, receive, self._setting_cookie(send) if from_query else send)

    def _matches(self, given: str | None) -> bool:
        # compare_digest takes as long whatever the first differing byte: no timing oracle.
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def _setting_cookie(self, send: Send) -> Send:
        cookie = f"{COOKIE_NAME}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return send_with_cookie


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_PARAMETER)
    return values[-1] if values else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie_token(scope: Scope) -> str | None:
    header = _header(scope, b"cookie")
    if header is None:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header)
    except CookieError:
        return None
    morsel = cookies.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


def _header_token(scope: Scope) -> str | None:
    header = _header(scope, b"authorization")
    if header is None or not header.lower().startswith("token "):
        return None
    return header[len("token ") :].strip()


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})  # policy violation
        return
    await send({
        "type": "http.response.start", "status": 403,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(REFUSED)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": REFUSED})
