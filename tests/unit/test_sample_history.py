"""The sample history is the same on every installation and spans two program years."""

import random
from datetime import date

from cli.sample_history import history
from shared.contracts import outcomes as out
from shared.periods import program_year


def test_the_history_is_seeded_and_covers_two_program_years_with_a_trend():
    made = [history("sw-mp", ["acme", "bolt"], date(2026, 12, 3), random.Random("s")) for _ in range(2)]
    assert made[0] == made[1]
    hires = [e for e in made[0] if isinstance(e, out.HireRecorded)]
    years = {program_year(h.start_date) for h in hires}
    assert years == {"PY2025", "PY2026"}
    per_year = {y: sum(program_year(h.start_date) == y for h in hires) for y in years}
    assert per_year["PY2025"] > 12 * 6 - 1 and per_year["PY2026"] > 0
