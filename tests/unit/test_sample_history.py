"""The sample history is the same on every installation and spans two program years."""

import random
from datetime import date

from cli.sample_history import history
from shared.contracts import outcomes as out
from shared.periods import program_year


def test_the_history_is_seeded_and_covers_two_program_years_with_a_trend():
    made = [history("sw-mp", ["acme", "bolt"], ["qvcc"], date(2026, 12, 3), random.Random("s")) for _ in range(2)]
    assert made[0] == made[1]
    hires = [e for e in made[0] if isinstance(e, out.HireRecorded)]
    years = {program_year(h.start_date) for h in hires}
    assert years == {"PY2025", "PY2026"}
    per_year = {y: sum(program_year(h.start_date) == y for h in hires) for y in years}
    assert per_year["PY2025"] > 12 * 6 - 1 and per_year["PY2026"] > 0


def test_the_history_has_every_outcome_and_checks_only_what_has_happened():
    today = date(2026, 12, 3)
    made = history("sw-mp", ["acme", "bolt"], ["qvcc"], today, random.Random("s"))
    kinds = {type(e) for e in made}
    assert {out.RetentionChecked, out.SeparationRecorded, out.TrainingEnrolled, out.TrainingCompleted,
            out.CredentialEarned, out.PlacementRecorded, out.ApprenticeshipStarted} <= kinds
    hires = {e.hire_id: e for e in made if isinstance(e, out.HireRecorded)}
    for check in (e for e in made if isinstance(e, out.RetentionChecked)):
        hire = hires[check.hire_id]
        assert hire.start_date < check.checked_on <= today and check.person_id == hire.person_id
    enrolled = {e.person_id for e in made if isinstance(e, out.TrainingEnrolled)}
    assert {e.person_id for e in made if isinstance(e, out.TrainingCompleted)} <= enrolled
    assert all(e.completed_on <= today for e in made if isinstance(e, out.TrainingCompleted))
