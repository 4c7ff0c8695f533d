"""KPI pages for people: a statewide overview, a page per partnership (also as a one-page print
infographic) and a page per KPI, server-rendered from the same use cases as the JSON API
(services/metrics/queries.py, which decides who sees what). Every table exports as CSV and JSON.

Signing in with an API key opens a server-side session (services/metrics/sessions.py) behind an
HttpOnly, SameSite cookie. Every form POST must come from this site (Origin, or Referer without
one), failed sign-ins are throttled per client address, and every answer carries a
Content-Security-Policy that allows nothing but this site (pages have no script)."""

import json
import logging
import uuid
from datetime import UTC, date, tzinfo
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.metrics import forms, views
from services.metrics.queries import KpiService, landing
from services.metrics.recording import EventsGateway, recording_routes
from services.metrics.roster import RosterGateway, manages, roster_routes
from services.metrics.sessions import LoginThrottle, Sessions
from services.metrics.shares import ShareLinks, share_pages
from shared.auth import KeyRing, Principal
from shared.contracts.base import AccessRole
from shared.errors import DomainError, Invalid, NotAllowed, Unavailable
from shared.periods import program_year

COOKIE = "backbone_session"
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                        autoescape=select_autoescape(["html"]))
# The templates carry their styles inline (one <style> block, progress bar widths): 'unsafe-inline'
# for styles only; scripts are not allowed at all.
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",  # a partnership's figures stay out of shared caches
}
LINEAGE_ROWS = 25  # of a KPI's lineage read as rows on its page; every id is listed below them
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ERROR_TITLES = {400: "Bad request", 404: "Not found", 422: "Please check what you typed", 500: "Something went wrong",
                503: "Not now"}
log = logging.getLogger(__name__)


def render(template: str, status: int = 200, headers: dict | None = None, **context) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(**context), status_code=status, headers=headers)


class SignInFirst(Exception):
    def __init__(self, path: str):
        self.path = path


class PageRoute(APIRoute):
    """Every /ui answer gets the page headers; a refusal is shown as a page, a missing session
    sends the browser to sign in."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInFirst as missing:
                response = RedirectResponse(f"/ui/login?next={quote(missing.path)}", status_code=303)
            except NotAllowed as refused:
                response = render("denied.html", status=403, who=getattr(request.state, "who", None),
                                  what=refused.message)
            except RequestValidationError:
                response = error_page(request, 422, "Part of this address is not valid: check what you typed.")
            except DomainError as error:
                response = error_page(request, error.status, _plain(error))
            except Exception:  # a page never answers with a traceback or raw JSON
                log.exception("page failed", extra={"path": request.url.path})
                response = error_page(request, 500, "The page could not be shown. Try again; if it persists, "
                                                    "tell your operator.")
            response.headers.update(PAGE_HEADERS)
            return response

        return page


def _plain(error: DomainError) -> str:
    """A domain error in words: `period: ...` reads as the field the person typed into."""
    if isinstance(error, Invalid):
        return f"The {error.field.replace('_', ' ')} is not valid: {error.reason}."
    return error.message[:1].upper() + error.message[1:] + "."


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page that keeps what was typed into the period box, so it can be corrected."""
    return render("error.html", status=status, who=getattr(request.state, "who", None),
                  heading=ERROR_TITLES.get(status, "Something went wrong"), message=message,
                  path=request.url.path, period=request.query_params.get("period"))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def same_origin(request: Request) -> None:
    """Forms only from this site's own pages (no cross-site request forgery, login CSRF included)."""
    if request.method in SAFE_METHODS:
        return
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or _origin(claimed) != _origin(str(request.base_url)):
        raise NotAllowed("this form must be sent from this site's own pages")


def export(request: Request, table: views.Table) -> Response | None:
    fmt = request.query_params.get("format")
    if fmt == "csv":
        return Response(table.csv(), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="{table.name}.csv"'})
    if fmt == "json":
        return JSONResponse(table.json())
    return None


def after_sign_in(who: Principal, asked: str) -> str:
    """The page asked for, or the key's own: the overview for operators, else its first partnership."""
    if asked.startswith("/ui/") and asked != "/ui/":
        return asked
    home = landing(who)
    return f"/ui/partnerships/{home}" if home else "/ui/"


def pages(kpi_service: KpiService, keys: KeyRing, sessions: Sessions, throttle: LoginThrottle,
          links: ShareLinks, gateway: EventsGateway, roster_gateways: dict[str, RosterGateway],
          zone: tzinfo = UTC) -> APIRouter:
    router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False, route_class=PageRoute,
                       dependencies=[Depends(same_origin)])
    TEMPLATES.globals["zone"] = getattr(zone, "key", str(zone))  # forms say in which zone times are typed
    TEMPLATES.globals["when"] = lambda moment: views.local_time(moment, zone)

    async def signed_in(request: Request) -> Principal:
        key_id = await sessions.key_id(request.cookies.get(COOKIE))
        who = await keys.principal(key_id) if key_id else None  # None once the key is revoked
        if who is None:
            raise SignInFirst(request.url.path)
        request.state.who = who
        return who

    def table_or_page(request: Request, template: str, **context) -> Response:
        """One of the page's tables if `?table=` asks for it, else the page."""
        chosen, tables = request.query_params.get("table"), context["tables"]
        if chosen is not None:
            return (export(request, tables[chosen]) if chosen in tables else None) or HTMLResponse(status_code=400)
        return render(template, **context)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(next: str = "/ui/") -> HTMLResponse:
        return render("login.html", next=next if next.startswith("/ui/") else "/ui/")

    @router.post("/login")
    async def login(request: Request) -> Response:
        client = request.client.host if request.client else ""
        form = parse_qs((await request.body()).decode(errors="replace"))
        key, target = form.get("api_key", [""])[0].strip(), form.get("next", ["/ui/"])[0]
        if (wait := throttle.retry_after(client)) is not None:
            return render("login.html", status=429, headers={"retry-after": str(wait)}, next=target,
                          error="Too many failed sign-ins from here: try again in a minute.")
        if (who := await keys.authenticate(key) if key else None) is None:
            throttle.failed(client)
            return render("login.html", status=401, next=target, error="That API key is not valid.")
        response = RedirectResponse(after_sign_in(who, target), status_code=303)
        response.set_cookie(COOKIE, await sessions.open(who.key_id, key), max_age=sessions.seconds, httponly=True,
                            samesite="lax", secure=request.url.scheme == "https", path="/ui")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/", response_class=HTMLResponse)
    async def overview(request: Request, period: str | None = None, sort: str = "hires", dir: str = "desc",
                       who: Principal = Depends(signed_in)) -> Response:
        data = await kpi_service.overview(who, period or program_year(date.today()))
        table = views.Table("overview", f"Every partnership, {data['period']}", views.OVERVIEW_COLUMNS,
                            data["rows"]).sorted_by(sort, dir == "desc")
        return export(request, table) or render("overview.html", who=who, table=table, sort=sort, dir=dir,
                                                definitions=views.DEFINITIONS, **data)

    @router.get("/partnerships/{partnership_id}", response_class=HTMLResponse)
    async def partnership(request: Request, partnership_id: str, period: str | None = None, grain: str = "month",
                          who: Principal = Depends(signed_in)) -> Response:
        data = await kpi_service.partnership_page(who, partnership_id, period or program_year(date.today()), grain)
        return table_or_page(request, "partnership.html", who=who, **data)

    @router.get("/partnerships/{partnership_id}/print", response_class=HTMLResponse)
    async def infographic(partnership_id: str, period: str | None = None,
                          who: Principal = Depends(signed_in)) -> Response:
        data = await kpi_service.partnership_page(who, partnership_id, period or program_year(date.today()),
                                                  "quarter")
        return render("print.html", who=who, **data)

    @router.get("/shared/{token}", response_class=HTMLResponse)
    async def shared_infographic(request: Request, token: str, period: str | None = None) -> Response:
        """The infographic behind a share link, for anyone holding it; no session, no navigation."""
        visitor = await links.visitor(token)
        if visitor is None:
            return error_page(request, 404, "This link is not valid: it may have been revoked or have expired.")
        (partnership_id,) = visitor.partnership_ids
        data = await kpi_service.partnership_page(visitor, partnership_id, period or program_year(date.today()),
                                                  "quarter")
        return render("print.html", who=None, **data)

    @router.get("/kpis", response_class=HTMLResponse)
    async def kpi_index(who: Principal = Depends(signed_in)) -> Response:
        return render("kpis.html", who=who, catalogue=list(views.DEFINITIONS.values()),
                      period=program_year(date.today()))

    @router.get("/kpis/{kpi}", response_class=HTMLResponse)
    async def kpi_page(request: Request, kpi: str, period: str | None = None, partnership: str | None = None,
                       who: Principal = Depends(signed_in)) -> Response:
        data = await kpi_service.kpi_page(who, kpi, period or program_year(date.today()), partnership)
        return table_or_page(request, "kpi.html", who=who, lineage_rows=await lineage_rows(request, who, data), **data)

    async def lineage_rows(request: Request, who: Principal, data: dict) -> list:
        """The lineage's events as readable rows, for those who may read a partnership's records; the
        bare ids otherwise, or when the events service cannot answer now (the figures still show)."""
        scope_id, ids = data["scope_id"], data["lineage"]["event_ids"]
        if not (scope_id and ids and may_write(who, scope_id)) or (key := await key_of(request)) is None:
            return []
        try:
            found = await gateway.records(key, scope_id, ids=ids[:LINEAGE_ROWS])
        except (Unavailable, NotAllowed):
            return []
        return [forms.row_of(r, zone) for r in found]

    async def key_of(request: Request) -> str | None:
        return await sessions.key(request.cookies.get(COOKIE))

    recording_routes(router, signed_in, key_of, gateway, render, zone)
    share_pages(router, signed_in, links, render, zone)
    roster_routes(router, signed_in, key_of, roster_gateways, render)

    @router.get("/{unknown:path}", response_class=HTMLResponse)
    async def not_found(request: Request, unknown: str, who: Principal = Depends(signed_in)) -> Response:
        return error_page(request, 404, f"There is no page at {request.url.path}.")

    return router


def may_write(who: Principal | None, partnership_id: str) -> bool:
    """The one place deciding whether a page shows write controls (forms, correct, void) for a
    partnership: operators, and its admins and partner systems; never viewers or share-link
    visitors (who=None). The use cases check again on every submission."""
    return who is not None and who.may_write(partnership_id)


def role_label(who: Principal) -> str:
    return "statewide operator" if who.role is AccessRole.OPERATOR else who.role.value.replace("_", " ")


# uuid: void forms draw their event id when shown, so sending one twice voids once
TEMPLATES.globals.update(uuid=lambda: str(uuid.uuid4()), fmt=views.fmt, cell=views.cell,
                         progress_bar=views.progress_bar, role_label=role_label, may_write=may_write,
                         may_manage=manages, json=json)
