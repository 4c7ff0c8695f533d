"""The names of the KPI catalogue (services/metrics/kpis.py), for services that may not import
metrics but must name KPIs: membership checks a target's KPI against this list. A unit test keeps
it equal to the catalogue, so the two cannot drift.

Each name maps to whether the KPI is one number (a target can be set on it) rather than a
breakdown (members by kind, openings by occupation), which has no single value to reach."""

import difflib

KPI_NAMES: dict[str, bool] = {  # name -> one number a target can be set on
    "employers_engaged": True,
    "employers_hosting": True,
    "active_members": False,
    "new_members": True,
    "members_lost": True,
    "action_teams_active": True,
    "tours_held": True,
    "career_events_held": True,
    "hiring_events_held": True,
    "hiring_event_employers": True,
    "meetings_held": True,
    "students_reached": True,
    "job_seekers_reached": True,
    "employer_attendee_share": True,
    "hires": True,
    "local_hire_rate": True,
    "career_changers_hired": True,
    "median_starting_wage": True,
    "placements": True,
    "training_enrolments": True,
    "training_completions": True,
    "credentials_earned": True,
    "apprenticeships_started": True,
    "retention_90_days": True,
    "retention_90_days_coverage": True,
    "retention_180_days": True,
    "retention_180_days_coverage": True,
    "retention_q2_q4": True,
    "retention_q2_q4_coverage": True,
    "openings_by_occupation": False,
}

TARGETABLE: frozenset[str] = frozenset(name for name, scalar in KPI_NAMES.items() if scalar)


def unknown_kpi(name: str) -> str | None:
    """Why `name` cannot have a target (not a KPI, with the nearest name; or a breakdown), or None."""
    if name in TARGETABLE:
        return None
    if name in KPI_NAMES:
        return f"{name} is a breakdown, not one number: a target needs a single-valued KPI"
    nearest = difflib.get_close_matches(name, TARGETABLE, n=1)
    return f"{name} is not a KPI" + (f"; did you mean {nearest[0]}?" if nearest else "")
