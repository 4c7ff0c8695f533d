"""The roster from the pages: members joining and leaving, action teams, the roadmap's targets and
the partnership's keys, sent to the membership service's API as the person signed in (their key,
kept sealed in the session), so its use cases decide who may change what, as for every client.
The forms are derived from that API's request models (shared/contracts/requests.py), as the
recording forms are from the event contracts; refusals come back next to the field."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from services.metrics import forms, kpis
from services.metrics.forms import FormField
from services.metrics.gateway import ServiceGateway
from shared.auth import Principal
from shared.contracts import requests as req
from shared.contracts.base import AccessRole
from shared.errors import NotAllowed, NotFound
from shared.subscriptions import SubscriptionIn


@dataclass(frozen=True)
class RosterForm:
    slug: str
    title: str
    method: str
    path: str  # of the membership API: {partnership_id} and the fields named in it are filled in
    fields: tuple[FormField, ...]
    in_path: tuple[str, ...]
    service: str = "membership"  # whose API: membership, or notify for subscriptions
    has_body: bool = True
    shows_answer: bool = False  # a key's or a webhook's secret: shown once, on the page that made it


# What the request models cannot say: the KPI a target is for is one of the catalogue's.
_KPI = {"input": "select", "options": tuple(kpis.BY_NAME), "label": "KPI"}


def _form(slug: str, title: str, method: str, path: str, model: type[BaseModel] | None = None,
          skip: tuple[str, ...] = (), refine: dict[str, dict] | None = None, service: str = "membership",
          shows_answer: bool = False) -> RosterForm:
    in_path = tuple(n for n in (p.split("}")[0] for p in path.split("{")[1:]) if n != "partnership_id")
    typed = forms.fields_of(model, skip) if model else ()
    if typed is None:
        raise ValueError(f"{model} requires a field no form can ask")
    fields = tuple(FormField(n, forms.label(n), "text", True) for n in in_path) + typed
    refine = {"kpi": _KPI} | (refine or {})
    return RosterForm(slug, title, method, path, tuple(replace(f, **refine.get(f.name, {})) for f in fields), in_path,
                      service, model is not None, shows_answer)


FORMS: dict[str, RosterForm] = {f.slug: f for f in (
    _form("member-joined", "Add a member", "POST", "/partnerships/{partnership_id}/members", req.MembershipIn),
    _form("member-left", "Record a member leaving", "POST",
          "/partnerships/{partnership_id}/members/{membership_id}/leave", req.MembershipLeave),
    _form("team-formed", "Form an action team", "POST", "/partnerships/{partnership_id}/action-teams",
          req.ActionTeamIn, refine={"id": {"label": "Team id (short, no spaces)"}}),
    _form("team-changed", "Change an action team", "PATCH", "/partnerships/{partnership_id}/action-teams/{team_id}",
          req.ActionTeamPatch),
    _form("target-set", "Set a target", "PUT", "/partnerships/{partnership_id}/targets", req.TargetIn),
    _form("target-removed", "Remove a target", "DELETE", "/partnerships/{partnership_id}/targets/{kpi}/{period}"),
    # Keys of this partnership for its partner systems and viewers (operators issue theirs elsewhere).
    _form("key-issued", "Issue a key", "POST", "/keys", req.KeyIn, skip=("partnership_ids",),
          refine={"role": {"options": (AccessRole.PARTNER_SYSTEM.value, AccessRole.VIEWER.value)},
                  "label": {"label": "Who it is for"}}, shows_answer=True),
    _form("key-revoked", "Revoke a key", "DELETE", "/keys/{key_id}"),
    _form("subscription-added", "Subscribe a webhook or an e-mail address", "POST", "/subscriptions",
          SubscriptionIn, skip=("partnership_ids",), service="notify", shows_answer=True,
          refine={"event_types": {"label": "Event types (* for all, e.g. org.backbone.hire.*)"}}),
    _form("subscription-resumed", "Resume a paused subscription", "POST", "/subscriptions/{subscription_id}/resume",
          service="notify"),
    _form("subscription-removed", "Remove a subscription", "DELETE", "/subscriptions/{subscription_id}",
          service="notify"),
)}


def request_of(form: RosterForm, typed: dict[str, list[str]], partnership_id: str) -> tuple[str, dict | None]:
    """The API path and body of what was typed (path fields quoted into the path)."""
    values = forms.values_of(form.fields, typed)
    path = form.path.format(partnership_id=quote(partnership_id, safe=""),
                            **{n: quote(str(values.pop(n, "")), safe="") for n in form.in_path})
    if not form.has_body:
        return path, None
    if form.shows_answer:  # a key or subscription of this partnership, made on its page
        values["partnership_ids"] = [partnership_id]
    return path, values


def api_errors(answer: dict) -> list[dict]:
    """The membership API's refusal as errors naming fields (`loc` ["body", "organisation_id"])."""
    detail = answer.get("detail")
    if isinstance(detail, list):
        return [{"field": ".".join(str(p) for p in e.get("loc", [])[1:]), "message": e.get("msg", "not valid")}
                for e in detail]
    return [{"message": str(detail)}]


DONE = {"member-joined": "Member added.", "member-left": "Leaving recorded.", "team-formed": "Action team formed.",
        "team-changed": "Action team changed.", "target-set": "Target set.", "target-removed": "Target removed.",
        "key-revoked": "Key revoked: every service refuses it within seconds.",
        "subscription-resumed": "Subscription resumed: held deliveries go out now.",
        "subscription-removed": "Subscription removed: its pending deliveries are cancelled."}


class RosterGateway(ServiceGateway):
    """The membership or notify service's public API, called with the signed-in person's key."""

    async def items(self, key: str, path: str, **params) -> list[dict] | None:
        """A list of the API (its first 200 items); None when this key may not read it."""
        answer = await self.call("GET", path, key, params=params)
        if answer.status_code != 200:
            return None
        found = answer.json()
        return found["items"] if isinstance(found, dict) else found


def roster_gateways(membership_url: str | None, notify_url: str | None) -> dict[str, RosterGateway]:
    return {"membership": RosterGateway(membership_url, "the membership service", "METRICS_MEMBERSHIP_URL"),
            "notify": RosterGateway(notify_url, "the notify service", "METRICS_NOTIFY_URL")}


def manages(who: Principal | None, partnership_id: str) -> bool:
    """Whether the pages offer the partnership's roster and share links: to its admins and operators
    (the membership service and ShareLinks decide again on every change)."""
    return who is not None and who.may_write(partnership_id) and (
        who.is_operator or who.role is AccessRole.PARTNERSHIP_ADMIN)


def may_manage(who: Principal, partnership_id: str) -> None:
    if not manages(who, partnership_id):
        raise NotAllowed(f"role {who.role.value.replace('_', ' ')} may not change this partnership's roster")


def roster_routes(router: APIRouter, signed_in: Callable[..., Awaitable[Principal]],
                  key_of: Callable[[Request], Awaitable[str | None]], gateways: dict[str, RosterGateway],
                  render: Callable[..., HTMLResponse]) -> None:
    """Adds the roster pages to the /ui router (its page errors, headers and same-origin rule)."""

    async def session_key(request: Request) -> str:
        if (key := await key_of(request)) is None:  # a session opened before sessions kept keys
            raise NotAllowed("sign out and in again to change the roster")
        return key

    def form_named(slug: str) -> RosterForm:
        if (form := FORMS.get(slug)) is None:
            raise NotFound(f"there is no form {slug!r}")
        return form

    @router.get("/partnerships/{partnership_id}/roster", response_class=HTMLResponse)
    async def roster(request: Request, partnership_id: str, done: str | None = None,
                     who: Principal = Depends(signed_in)) -> Response:
        """Members, action teams, targets and keys, each with the forms that change them."""
        may_manage(who, partnership_id)
        key, base = await session_key(request), f"/partnerships/{quote(partnership_id, safe='')}"
        membership, notify = gateways["membership"], gateways["notify"]
        keys = await membership.items(key, "/keys", revoked=False, limit=200)
        return render("roster.html", who=who, partnership_id=partnership_id, done=DONE.get(done or ""),
                      forms=FORMS, members=await membership.items(key, f"{base}/members", active=True, limit=200) or [],
                      teams=await membership.items(key, f"{base}/action-teams", limit=200) or [],
                      targets=await membership.items(key, f"{base}/targets", limit=200) or [],
                      keys=[k for k in keys or [] if partnership_id in k.get("partnership_ids", [])],
                      subscriptions=await notify.items(key, "/subscriptions", partnership_id=partnership_id) or [])

    @router.get("/partnerships/{partnership_id}/roster/{slug}", response_class=HTMLResponse)
    async def roster_form(request: Request, partnership_id: str, slug: str,
                          who: Principal = Depends(signed_in)) -> Response:
        """A roster form; its fields may be given in the address (the roster page's links fill
        the member, team, target or key they are about)."""
        may_manage(who, partnership_id)
        form = form_named(slug)
        typed = {f.name: [v] for f in form.fields if (v := request.query_params.get(f.name))}
        return render("roster_form.html", who=who, partnership_id=partnership_id, form=form, typed=typed, errors={},
                      problems=[])

    @router.post("/partnerships/{partnership_id}/roster/{slug}", response_class=HTMLResponse)
    async def change(request: Request, partnership_id: str, slug: str, who: Principal = Depends(signed_in)) -> Response:
        may_manage(who, partnership_id)
        form = form_named(slug)
        typed = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
        path, body = request_of(form, typed, partnership_id)
        answer = await gateways[form.service].call(form.method, path, await session_key(request),
                                    **({"json": body} if body is not None else {}))
        if answer.status_code == 403:
            raise NotAllowed(answer.json().get("detail") or "this key may not change this")
        if answer.status_code < 300 and form.shows_answer and answer.status_code != 204:
            return render("roster_form.html", status=201, who=who, partnership_id=partnership_id, form=form,
                          typed={}, errors={}, problems=[], issued=answer.json())
        if answer.status_code < 300:
            return RedirectResponse(f"/ui/partnerships/{partnership_id}/roster?done={slug}", status_code=303)
        by_field, other = forms.field_errors(form.fields, api_errors(answer.json()))
        return render("roster_form.html", status=422, who=who, partnership_id=partnership_id, form=form,
                      typed=typed, errors=by_field, problems=other)
