"""What notifications say (pure, no I/O): notify's own CloudEvents (reminder, digest, meeting
follow-up) and the e-mail (plain text plus simple HTML) for any notification."""

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from services.notify.domain import DIGEST, FOLLOW_UP, REMINDER
from shared.contracts.activities import ActivityCompleted
from shared.contracts.base import EventData
from shared.contracts.notifications import ActivityReminder, MeetingFollowUp, WeeklyDigest
from shared.envelope import new_event

SOURCE = "/backbone/notify"
MILESTONE = "org.backbone.kpi.milestone_reached.v1"
# Payload fields that name an organisation: e-mails show its name next to the id.
ORGANISATION_FIELDS = ("organisation_id", "employer_id", "provider_id", "host_ids", "participant_ids")
# Pseudonymous person ids mean nothing to a reader; they stay in webhooks only.
HIDDEN_FIELDS = {"partnership_id", "person_id", "person_ids"}


def organisations_in(data: dict[str, Any]) -> list[str]:
    """The organisation ids a notification's e-mail shows by name."""
    ids: list[str] = []
    for field in ORGANISATION_FIELDS:
        value = data.get(field)
        ids.extend([value] if isinstance(value, str) else value or [])
    ids.extend(f["owner_id"] for f in data.get("follow_ups", []) if f.get("owner_id"))
    ids.extend(data.get("happened", {}).get("new_members", []))
    return ids


def webhook_body(id: str, time: datetime, subject: str, data: EventData) -> bytes:
    """A CloudEvent (structured JSON) of one of notify's own types, as webhooks receive it."""
    return new_event(data, source=SOURCE, subject=subject, id=id, time=time).to_json()


def reminder_data(activity: dict, lead_seconds: int) -> ActivityReminder:
    return ActivityReminder(
        partnership_id=activity["partnership_id"], activity_id=activity["activity_id"],
        kind=activity["kind"], title=activity["title"], starts_at=activity["starts_at"],
        ends_at=activity["ends_at"], sites=activity.get("sites", []), host_ids=activity.get("host_ids", []),
        lead_seconds=lead_seconds,
    )


def follow_up_data(completed: ActivityCompleted, title: str | None) -> MeetingFollowUp:
    """A partnership meeting's minutes and follow-up items, from its ActivityCompleted payload."""
    return MeetingFollowUp(
        partnership_id=completed.partnership_id, activity_id=completed.activity_id, title=title,
        completed_at=completed.completed_at, participant_ids=completed.participant_ids,
        minutes=completed.minutes, follow_ups=completed.follow_ups,
    )


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


def _title(event_type: str) -> str:
    # org.backbone.member.joined.v1 -> "Member joined"
    return " ".join(event_type.split(".")[2:-1]).replace("_", " ").capitalize()


def _when(value: str | datetime, zone: ZoneInfo) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(zone).strftime("%a %d %b %Y, %H:%M %Z")


def _named(value: Any, names: dict[str, str]) -> str:
    if isinstance(value, list):
        return ", ".join(_named(v, names) for v in value)
    return f"{names[value]} ({value})" if value in names else str(value)


def _label(field: str) -> str:
    return field.removesuffix("_ids").removesuffix("_id").replace("_", " ")


def _facts(data: dict[str, Any], names: dict[str, str]) -> list[tuple[str, str]]:
    facts = []
    for field, value in data.items():
        if field in HIDDEN_FIELDS or value in (None, [], {}):
            continue
        shown = _named(value, names) if field in ORGANISATION_FIELDS else value
        if isinstance(shown, dict):
            shown = ", ".join(f"{k}: {v}" for k, v in shown.items())
        elif isinstance(shown, list):
            shown = ", ".join(str(v) for v in shown)
        facts.append((_label(field), str(shown)))
    return facts


class _Body:
    """Paragraphs and lists, written once and rendered both as plain text and as HTML."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.html: list[str] = []

    def para(self, line: str) -> None:
        self.text.append(line + "\n")
        self.html.append(f"<p>{escape(line)}</p>")

    def heading(self, line: str) -> None:
        self.text.append(f"{line}\n{'-' * len(line)}")
        self.html.append(f"<h3>{escape(line)}</h3>")

    def items(self, lines: list[str], empty: str = "(none)") -> None:
        lines = lines or [empty]
        self.text.append("\n".join(f"- {line}" for line in lines) + "\n")
        self.html.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>")


def render(event: dict[str, Any], partnership_name: str, names: dict[str, str], unsubscribe_url: str,
           zone: ZoneInfo) -> Mail:
    """The e-mail for a notification (a CloudEvent as a dict); `names` maps organisation ids to names."""
    event_type, data = event["type"], event["data"]
    body = _Body()
    if event_type == REMINDER:
        hours = data["lead_seconds"] / 3600
        headline = f"Reminder: {data['title']}"
        body.para(f"{data['title']} ({_label(data['kind'])}) starts {_when(data['starts_at'], zone)}, "
                  f"in about {hours:g} hour{'s' if hours != 1 else ''}.")
        body.items([f"{k}: {v}" for k, v in _facts({"sites": data["sites"], "host_ids": data["host_ids"]}, names)], "")
    elif event_type == FOLLOW_UP:
        headline = f"Follow-up: {data['title'] or data['activity_id']}"
        body.para(f"The partnership meeting of {_when(data['completed_at'], zone)} is done. Its minutes and "
                  "follow-up items, for the organisations that took part:")
        body.heading("Minutes")
        body.para(data["minutes"] or "(no minutes were recorded)")
        body.heading("Follow-up items")
        body.items([" ".join(filter(None, [f["title"], f"({_named(f['owner_id'], names)})" if f.get("owner_id") else "",
                                           f"due {f['due']}" if f.get("due") else ""]))
                    for f in data["follow_ups"]])
    elif event_type == DIGEST:
        headline = f"Weekly digest, {data['week']}"
        _digest(body, data, names, zone)
    elif event_type == MILESTONE:
        headline = f"Milestone reached: {data['kpi']} {data['value']:g}"
        why = "its target" if data["reason"] == "target" else f"the round number {data['threshold']:g}"
        body.para(f"A small win to celebrate: {data['kpi']} reached {data['value']:g} in {data['period']}, "
                  f"crossing {why}.")
    else:
        headline = _title(event_type)
        body.items([f"{k}: {v}" for k, v in _facts(data, names)])
    footer = (f"You receive this because of a subscription to the news of {partnership_name} in Backbone. "
              "Unsubscribe:")
    text = "\n".join([partnership_name, "", headline, "", *body.text, "--", footer, unsubscribe_url, ""])
    html = (f"<html><body><p><strong>{escape(partnership_name)}</strong></p><h2>{escape(headline)}</h2>"
            + "".join(body.html)
            + f'<hr><p><small>{escape(footer)} <a href="{escape(unsubscribe_url)}">unsubscribe</a></small></p>'
            "</body></html>")
    return Mail(f"[{partnership_name}] {headline}", text, html)


def _digest(body: _Body, data: dict[str, Any], names: dict[str, str], zone: ZoneInfo) -> None:
    happened = data["happened"]
    body.heading("What happened last week")
    body.items([f"{n} x {_title(t)}" for t, n in sorted(happened["counts"].items())], "nothing was recorded")
    body.heading("New members")
    body.items([_named(o, names) for o in happened["new_members"]])
    if happened["milestones"]:
        body.heading("Milestones")
        body.items([f"{m['kpi']} reached {m['value']:g} ({m['period']})" for m in happened["milestones"]])
    body.heading("What's coming")
    body.items([f"{_when(a['starts_at'], zone)}: {a['title']} ({_label(a['kind'])})" for a in data["coming"]],
               "no activities scheduled in the next 7 days")
    body.heading("KPI movement")
    kpis = data["kpis"]
    if kpis["available"]:
        body.para(f"Program year {kpis['period']}, change since the last digest:")
        body.items([f"{r['kpi']}: {r['value']:g}" + ("" if r["change"] is None else f" ({r['change']:+g})")
                    for r in kpis["movement"]])
    else:
        body.para(kpis["note"])


def digest_data(partnership_id: str, week: str, since: datetime, until: datetime, journal: list[dict],
                coming: list[dict], kpis: dict[str, Any]) -> WeeklyDigest:
    """A partnership's week: counts of what happened (from notify's journal of events), new
    members and milestones, activities of the next 7 days, KPI movement (or why it is missing)."""
    counts: dict[str, int] = {}
    for entry in journal:
        counts[entry["type"]] = counts.get(entry["type"], 0) + 1
    return WeeklyDigest.model_validate({
        "partnership_id": partnership_id, "week": week, "since": since, "until": until,
        "happened": {
            "counts": counts,
            "new_members": [e["data"]["organisation_id"] for e in journal if e["type"].endswith(".member.joined.v1")],
            "milestones": [{k: e["data"][k] for k in ("kpi", "period", "value", "reason")}
                           for e in journal if e["type"] == MILESTONE],
        },
        "coming": [{k: a[k] for k in ("activity_id", "title", "kind", "starts_at")} for a in coming],
        "kpis": kpis,
    })
