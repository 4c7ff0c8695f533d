"""KPI pages for people: a statewide overview, a page per partnership (also as a one-page print
infographic) and a page per KPI, server-rendered from the same queries as the JSON API. Every
table exports as CSV and JSON. Login with an API key sets a signed, HttpOnly session cookie."""

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.metrics import kpis, views
from services.metrics.api import KpiQueries, Scope
from shared.auth import KeyRing, Principal
from shared.contracts.base import AccessRole

COOKIE = "backbone_session"
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                        autoescape=select_autoescape(["html"]))
TEMPLATES.globals.update(fmt=views.fmt, progress_bar=views.progress_bar)


class Sessions:
    """Signed cookie values `key_id.expiry.signature`: no secret of the key is ever in it."""

    def __init__(self, secret: bytes | None, hours: float):
        self.secret = secret or secrets.token_bytes(32)  # without one, sessions end with the process
        self.seconds = int(hours * 3600)

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, key_id: str) -> str:
        payload = f"{key_id}.{int(time.time()) + self.seconds}"
        return f"{payload}.{self._sign(payload)}"

    def key_id(self, value: str | None) -> str | None:
        if not value or value.count(".") < 2:
            return None
        payload, _, signature = value.rpartition(".")
        key_id, _, expiry = payload.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)) or not expiry.isdigit() or int(expiry) < time.time():
            return None
        return key_id


def pages(queries: KpiQueries, keys: KeyRing, sessions: Sessions) -> APIRouter:
    router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

    def render(template: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(TEMPLATES.get_template(template).render(**context), status_code=status)

    async def principal(request: Request) -> Principal:
        found = sessions.key_id(request.cookies.get(COOKIE))
        who = await keys.principal(found) if found else None
        if who is None:
            raise HTTPException(303, headers={"location": f"/ui/login?next={request.url.path}"})
        return who

    def export(request: Request, table: views.Table) -> Response | None:
        fmt = request.query_params.get("format")
        if fmt == "csv":
            return Response(table.csv(), media_type="text/csv",
                            headers={"content-disposition": f'attachment; filename="{table.name}.csv"'})
        if fmt == "json":
            return JSONResponse(table.json())
        return None

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(next: str = "/ui/") -> HTMLResponse:
        return render("login.html", next=next if next.startswith("/ui/") else "/ui/")

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        key, target = form.get("api_key", [""])[0].strip(), form.get("next", ["/ui/"])[0]
        who = await keys.authenticate(key) if key else None
        if who is None:
            return render("login.html", status=401, next=target, error="That API key is not valid.")
        if not target.startswith("/ui/") or target == "/ui/":
            target = "/ui/" if who.is_operator else f"/ui/partnerships/{sorted(who.partnership_ids)[0]}"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, sessions.issue(who.key_id), max_age=sessions.seconds, httponly=True,
                            samesite="lax", secure=request.url.scheme == "https", path="/ui")
        return response

    @router.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/", response_class=HTMLResponse)
    async def overview(request: Request, period: str | None = None, sort: str = "hires", dir: str = "desc") -> Response:
        who = await principal(request)
        if not who.is_operator:
            return render("denied.html", status=403, who=who, what="the statewide overview needs the operator role")
        period = period or views.program_year(date.today())
        definitions = {k.name: k for k in kpis.CATALOGUE}
        state = await queries.values(who, period, Scope.STATE)
        table = views.Table("overview", f"Every partnership, {period}", [("partnership_id", "Partnership")] +
                            [(name, definitions[name].title) for name in views.HEADLINE])
        names = (await queries.compare(who, "hires", period))["partnerships"]
        for row in names:
            values = (await queries.values(who, period, Scope.PARTNERSHIP, row["partnership_id"]))["values"]
            table.rows.append({"partnership_id": row["partnership_id"], "name": row["name"] or row["partnership_id"],
                               **{n: views.scalar(n, values[n]) for n in views.HEADLINE}})
        table = table.sorted_by(sort, dir == "desc")
        return export(request, table) or render(
            "overview.html", who=who, period=period, table=table, sort=sort, dir=dir, definitions=definitions,
            state={n: views.scalar(n, state["values"][n]) for n in views.HEADLINE})

    async def partnership_data(who: Principal, partnership_id: str, period: str, grain: str) -> dict:
        who.require_partnership(partnership_id)
        answer = await queries.values(who, period, Scope.PARTNERSHIP, partnership_id)
        reader = await queries.reader()
        roster = reader.rosters[partnership_id]
        definitions = {k.name: k for k in kpis.CATALOGUE}
        labels = views.grain_periods(period, grain)
        trends = {}
        for name in views.TRENDS:
            series = await queries.series(who, name, labels[0], labels[-1], Scope.PARTNERSHIP, partnership_id)
            today = date.today()
            trends[name] = [(p["period"], None if views.is_future(p["period"], today) else p["value"])
                            for p in series["points"]]
        members = views.Table("members-by-kind", "Active members by kind", [("kind", "Kind"), ("members", "Members")],
                              [{"kind": k.replace("_", " "), "members": n}
                               for k, n in sorted(answer["values"]["active_members"].items()) if k != "total"])
        teams = views.Table("action-teams", "Action teams", [("name", "Team"), ("priority", "Priority"),
                                                              ("status", "Status"), ("members", "Members")],
                            views.action_teams(roster.latest))
        upcoming = views.Table("upcoming-activities", "Upcoming activities",
                               [("starts_at", "Starts (UTC)"), ("title", "Activity"), ("kind", "Kind")],
                               views.upcoming_activities(roster.latest, datetime.now(UTC).isoformat()))
        cards = views.Table("kpis", f"Key figures, {period}", [("kpi", "KPI"), ("title", "Title"), ("value", "Value"),
                                                                ("target", "Target"), ("percent", "% of target"),
                                                                ("on_track", "On track")])
        targets = {t["kpi"]: t for t in answer["targets"]}
        for name in views.HEADLINE + tuple(t for t in targets if t not in views.HEADLINE):
            target = targets.get(name, {})
            cards.rows.append({"kpi": name, "title": definitions[name].title, "unit": definitions[name].unit.value,
                               "value": views.scalar(name, answer["values"][name]), "target": target.get("target"),
                               "percent": target.get("percent"), "on_track": target.get("on_track")})
        return {"name": reader.partnerships.get(partnership_id, {}).get("name") or partnership_id,
                "partnership_id": partnership_id, "period": period, "grain": grain, "cards": cards,
                "trends": {n: views.bar_chart(points, f"{definitions[n].title} by {grain}", definitions[n].unit.value)
                           for n, points in trends.items()},
                "trend_tables": {n: points for n, points in trends.items()}, "definitions": definitions,
                "tables": {t.name: t for t in (cards, members, teams, upcoming)}}

    @router.get("/partnerships/{partnership_id}", response_class=HTMLResponse)
    async def partnership(request: Request, partnership_id: str, period: str | None = None, grain: str = "month",
                          table: str | None = None) -> Response:
        who = await principal(request)
        if not who.may_access(partnership_id):
            return render("denied.html", status=403, who=who, what=f"this key has no access to {partnership_id}")
        grain = grain if grain in ("month", "quarter", "year") else "month"
        data = await partnership_data(who, partnership_id, period or views.program_year(date.today()), grain)
        if table in data["tables"]:
            return export(request, data["tables"][table]) or HTMLResponse(status_code=400)
        return render("partnership.html", who=who, **data)

    @router.get("/partnerships/{partnership_id}/print", response_class=HTMLResponse)
    async def infographic(request: Request, partnership_id: str, period: str | None = None) -> Response:
        who = await principal(request)
        if not who.may_access(partnership_id):
            return render("denied.html", status=403, who=who, what=f"this key has no access to {partnership_id}")
        data = await partnership_data(who, partnership_id, period or views.program_year(date.today()), "quarter")
        return render("print.html", who=who, **data)

    @router.get("/kpis/{kpi}", response_class=HTMLResponse)
    async def kpi_page(request: Request, kpi: str, period: str | None = None, partnership: str | None = None) -> Response:
        who = await principal(request)
        if kpi not in kpis.BY_NAME:
            raise HTTPException(404, f"no KPI {kpi!r}")
        definition = kpis.BY_NAME[kpi]
        period = period or views.program_year(date.today())
        comparison = await queries.compare(who, kpi, period)
        compare = views.Table(f"{kpi}-by-partnership", f"{definition.title} by partnership, {period}",
                              [("partnership_id", "Partnership"), ("name", "Name"), ("value", definition.title)],
                              [{**r, "value": views.scalar(kpi, r["value"])} for r in comparison["partnerships"]])
        scope, scope_id = (Scope.PARTNERSHIP, partnership) if partnership else (
            (Scope.STATE, None) if who.is_operator else (Scope.PARTNERSHIP, sorted(who.partnership_ids)[0]))
        labels = views.grain_periods(period, "month")
        points = (await queries.series(who, kpi, labels[0], labels[-1], scope, scope_id))["points"]
        series = views.Table(f"{kpi}-by-month", f"{definition.title} by month, {scope_id or 'statewide'}",
                             [("period", "Month"), ("value", definition.title)],
                             [{"period": p["period"], "value": views.scalar(kpi, p["value"])} for p in points])
        if request.query_params.get("table") in (compare.name, series.name):
            chosen = compare if request.query_params["table"] == compare.name else series
            return export(request, chosen) or HTMLResponse(status_code=400)
        lineage = await queries.lineage(who, kpi, period, scope, scope_id, limit=200)
        chart = views.bar_chart([(r["period"], r["value"]) for r in series.rows], series.caption, definition.unit.value)
        return render("kpi.html", who=who, definition=definition, period=period, compare=compare, series=series,
                      chart=chart, lineage=lineage, scope_id=scope_id)

    return router


def role_label(who: Principal) -> str:
    return "statewide operator" if who.role is AccessRole.OPERATOR else who.role.value.replace("_", " ")


TEMPLATES.globals.update(role_label=role_label, json=json)
