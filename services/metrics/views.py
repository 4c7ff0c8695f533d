"""What the KPI pages show, as pure logic: tables (also exported as CSV and JSON), sorting,
number formats, and bar charts as inline SVG (no chart library, nothing from a CDN)."""

import bisect
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from html import escape
from typing import Any

from services.metrics import kpis
from shared.periods import Grain, parse_period, periods_between
from shared.spreadsheet import csv_text

# The overview's columns: the shared-measurement headline of every partnership.
HEADLINE = ("active_members", "employers_engaged", "tours_held", "hiring_events_held", "hires", "local_hire_rate",
            "retention_90_days", "placements")
# The partnership page's trend charts.
TRENDS = ("hires", "employers_engaged", "tours_held", "students_reached")
DEFINITIONS = {k.name: k for k in kpis.CATALOGUE}
OVERVIEW_COLUMNS = [("partnership_id", "Partnership")] + [(name, DEFINITIONS[name].title) for name in HEADLINE]


@dataclass
class Table:
    name: str  # also the export's file name
    caption: str
    columns: list[tuple[str, str]]  # (key, heading)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def csv(self) -> str:
        """Cells a spreadsheet would run as formulas (names people typed) are neutralised."""
        return csv_text([heading for _, heading in self.columns],
                        (["" if row.get(k) is None else row[k] for k, _ in self.columns] for row in self.rows))

    def json(self) -> dict:
        return {"table": self.name, "caption": self.caption,
                "rows": [{k: row.get(k) for k, _ in self.columns} for row in self.rows]}

    def sorted_by(self, key: str | None, descending: bool) -> "Table":
        if key not in dict(self.columns):
            return self
        present = [r for r in self.rows if r.get(key) is not None]
        missing = [r for r in self.rows if r.get(key) is None]  # blanks last, whichever the direction
        return Table(self.name, self.caption, self.columns,
                     sorted(present, key=lambda r: r[key], reverse=descending) + missing)


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    if unit == kpis.Unit.RATIO:
        return f"{100 * value:.0f}%"
    if unit == kpis.Unit.USD_PER_HOUR:
        return f"${value:,.2f}/h"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def cell(value: Any) -> str:
    """A table cell for people: no Python values (`False`, `40.0`, `None`)."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, float | int):
        return fmt(value, kpis.Unit.COUNT)
    return "—" if value is None else str(value)


def scalar(name: str, value: Any) -> Any:
    """A KPI's headline number: breakdowns (members by kind) show their total."""
    return value.get("total") if isinstance(value, dict) else value


def grain_periods(label: str, grain: str) -> list[str]:
    """The months, quarters or (the one) program year of a program year, as period labels."""
    year = int(label[2:])
    start, end = date(year, 7, 1), date(year + 1, 6, 30)
    if grain == "year":
        return [label]
    return [p.label for p in periods_between(Grain.MONTH if grain == "month" else Grain.QUARTER, start, end)]


def is_future(period_label: str, today: date) -> bool:
    return parse_period(period_label).start > today


def bar_chart(points: list[tuple[str, float | None]], title: str, unit: str, target: float | None = None,
              width: int = 560, height: int = 220) -> str:
    """An accessible SVG bar chart: role=img with a short title and summary (the table next to it
    carries every number), axis labels large enough on a phone (at most 4, thinned out evenly), and
    a dashed target line when the partnership has a target for this KPI."""
    values = [v or 0 for _, v in points]
    top = max(values + [target or 0], default=0) or 1
    n = max(len(points), 1)
    gap, left, bottom = 4, 84, 40
    bar = (width - left) / n - gap
    step = -(-n // 4)  # every step-th label: 7 characters at 20 px never overlap (about 12 px on a phone)
    parts = []
    for i, (label, value) in enumerate(points):
        h = (height - bottom - 10) * (value or 0) / top
        x = left + i * (bar + gap)
        parts.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" class="bar">'
                     f"<title>{escape(label)}: {escape(fmt(value, unit))}</title></rect>")
        if i % step == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 10}" text-anchor="middle" class="axis">'
                         f"{escape(label)}</text>")
    parts.append(f'<text x="{left - 6}" y="22" text-anchor="end" class="axis">{escape(fmt(top, unit))}</text>')
    parts.append(f'<line x1="{left}" x2="{width}" y1="{height - bottom}" y2="{height - bottom}" class="baseline"/>')
    if target is not None:
        y = height - bottom - (height - bottom - 10) * target / top
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" class="target"/>'
                     f'<text x="{width - 4}" y="{y - 4:.1f}" text-anchor="end" class="axis">'
                     f"target {escape(fmt(target, unit))}</text>")
    summary = chart_summary(points, unit, target)
    key = zlib.crc32(f"{title}{points}".encode())  # stable ids, unique per chart on a page
    return (f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="t-{key} d-{key}" '
            f'class="chart"><title id="t-{key}">{escape(title)}</title>'
            f'<desc id="d-{key}">{escape(summary)}</desc>{"".join(parts)}</svg>')


def chart_summary(points: list[tuple[str, float | None]], unit: str, target: float | None = None) -> str:
    """One sentence instead of every value: the range, the highest point and the target."""
    known = [(label, v) for label, v in points if v is not None]
    if not known:
        return "No data yet for these periods."
    high = max(known, key=lambda p: p[1])
    text = (f"{len(points)} periods from {points[0][0]} to {points[-1][0]}; highest {fmt(high[1], unit)} "
            f"in {high[0]}; latest {fmt(known[-1][1], unit)} in {known[-1][0]}.")
    return text + (f" Target {fmt(target, unit)}." if target is not None else "")


def progress_bar(percent: float | None, title: str) -> str:
    """A bar towards the KPI's target, named for screen readers ("Hires: 45% of target")."""
    shown = min(max(percent or 0, 0), 100)
    name = escape(f"{title}: {shown:.0f}% of target", quote=True)
    return (f'<div class="progress" role="progressbar" aria-label="{name}" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{shown:.0f}"><span style="width:{shown:.0f}%"></span></div>')


def local_time(moment: str | datetime, zone: tzinfo) -> str:
    """A moment (ISO text, or aware, or naive UTC as MongoDB gives it) as people read it here: to
    the minute, in the installation's time zone, with its abbreviation ("2026-03-04 09:05 EST")."""
    when = datetime.fromisoformat(moment.replace("Z", "+00:00")) if isinstance(moment, str) else moment
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def scheduled(roster_latest: dict[str, list]) -> list[tuple[str, str, dict]]:
    """(UTC start, activity id, what it is) of the scheduled activities not closed yet, by start."""
    found = []
    for key, (_, _, info) in roster_latest.items():
        if not key.startswith("activity:"):
            continue
        activity_id = key.removeprefix("activity:")
        if f"activity_closed:{activity_id}" in roster_latest:
            continue
        starts_at = roster_latest.get(f"activity_time:{activity_id}", [None, None, None])[2]
        if starts_at:
            found.append((starts_at, activity_id, info))
    return sorted(found, key=lambda row: row[:2])


def upcoming_activities(open_activities: list[tuple[str, str, dict]], today_iso: str, zone: tzinfo,
                        limit: int = 10) -> list[dict]:
    """Of the scheduled activities (`scheduled`), those not started yet, soonest first."""
    first = bisect.bisect_left(open_activities, today_iso, key=lambda row: row[0])
    return [{"activity_id": activity_id, "title": info["title"], "kind": info["kind"].replace("_", " "),
             "starts_at": local_time(starts_at, zone)}
            for starts_at, activity_id, info in open_activities[first:first + limit]]


def action_teams(roster_latest: dict[str, list]) -> list[dict]:
    return sorted(({"action_team_id": key.removeprefix("team_info:"), **info}
                   for key, (_, _, info) in roster_latest.items() if key.startswith("team_info:")),
                  key=lambda r: (r["status"] != "active", r["name"]))
