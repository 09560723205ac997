"""The operator console: ``GET /`` for a browser, its files under ``/console/``.

The console is static HTML, CSS and ES modules (``gateway/static/console``) that call the
public API from the browser; it has no route of its own beyond its files. A request to
``/`` that does not accept HTML gets the same 404 as before the console existed. Its
Content-Security-Policy lets the page load and call nothing from another origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import hdrs, web

from gateway.api import Api, Response
from shared.core.errors import PageNotFound
from shared.domain.filters import AccountQuery
from shared.domain.roles import Access

api = Api(tag="console")

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "console"
CONSOLE_PREFIX: Final = "/console"
CSP: Final = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_TEXT: Final = {"type": "string"}
TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".txt": "text/plain",
}


def _accepts_html(request: web.Request) -> bool:
    kinds = {part.split(";")[0].strip() for part in request.headers.get(hdrs.ACCEPT, "").split(",")}
    return bool(kinds & {"text/html", "application/xhtml+xml"})


def _file(name: str) -> web.Response:
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or path.suffix not in TYPES or not path.is_file():
        raise PageNotFound()
    return web.Response(
        body=path.read_bytes(),
        content_type=TYPES[path.suffix],
        charset="utf-8",
        headers={
            hdrs.CACHE_CONTROL: "no-cache",
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


@api.route(
    "GET",
    "/",
    summary="The operator console (for a browser: Accept text/html)",
    description="Without `text/html` in Accept, 404 as any unknown page. `account_id` "
    "opens the console on that account (read by the page, so a view can be bookmarked).",
    query=AccountQuery,
    responses={200: Response("The console page", content_type="text/html", schema=_TEXT)},
    access=Access.PUBLIC,
    errors=(PageNotFound,),
    operation_id="getConsole",
)
async def get_console(request: web.Request) -> web.StreamResponse:
    if not _accepts_html(request):
        raise PageNotFound()
    return _file("index.html")


@api.route(
    "GET",
    f"{CONSOLE_PREFIX}/{{name}}",
    summary="A file of the console (HTML, CSS, JavaScript module, licence text)",
    responses={200: Response("The file", content_type="text/*", schema=_TEXT)},
    access=Access.PUBLIC,
    operation_id="getConsoleFile",
)
async def get_console_file(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])
