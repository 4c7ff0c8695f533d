"""The recording forms derived from the event contracts: fields, typed text to data, errors to fields."""

from services.metrics.forms import RECORDS, data_of, field_errors
from shared.catalog import EVENT_TYPES, OUTCOMES
from shared.contracts.outcomes import OutcomeVoided


def test_every_outcome_and_activity_record_has_a_form_with_its_required_fields():
    # Every outcome but a void, which is sent from the record it takes back.
    outcomes = {t.type for t in EVENT_TYPES if t.topic is OUTCOMES and t.model is not OutcomeVoided}
    assert {k.event_type.type for k in RECORDS.values()} >= outcomes
    assert "activity-scheduled" in RECORDS and "attendance-recorded" in RECORDS
    for kind in RECORDS.values():
        names = {f.name for f in kind.fields}
        required = {n for n, info in kind.event_type.model.model_fields.items() if info.is_required()}
        assert required - {"partnership_id"} <= names, kind.slug
        assert "partnership_id" not in names  # it comes from the page, never from what was typed


def test_field_kinds_follow_the_contract_types():
    hire = {f.name: f for f in RECORDS["hire-recorded"].fields}
    assert (hire["start_date"].input, hire["hourly_wage"].input, hire["resident"].input) == ("date", "number",
                                                                                               "checkbox")
    assert hire["hourly_wage"].step == "any" and not hire["hourly_wage"].required and hire["hire_id"].required
    scheduled = {f.name: f for f in RECORDS["activity-scheduled"].fields}
    assert scheduled["kind"].input == "select" and "plant_tour" in scheduled["kind"].options
    assert scheduled["starts_at"].input == "datetime-local" and scheduled["starts_at"].label.endswith("(UTC)")
    assert scheduled["host_ids"].input == "list" and scheduled["audiences"].input == "multiple"
    attendance = {f.name: f for f in RECORDS["attendance-recorded"].fields}
    assert attendance["counts"].input == "counts" and "students" in attendance["counts"].options


def test_typed_text_becomes_the_records_data():
    hire = RECORDS["hire-recorded"]
    data = data_of(hire, {"hire_id": [" h-1 "], "hourly_wage": ["24.5"], "resident": ["yes"], "programme_id": [""],
                          "start_date": ["2026-01-10"]}, "sw-mp")
    assert data == {"partnership_id": "sw-mp", "hire_id": "h-1", "hourly_wage": 24.5, "resident": True,
                    "career_changer": False, "start_date": "2026-01-10"}
    assert data_of(hire, {"hourly_wage": ["lots"]}, "p")["hourly_wage"] == "lots"  # the API says what is wrong
    scheduled = data_of(RECORDS["activity-scheduled"], {"starts_at": ["2026-03-10T14:00"], "capacity": ["25"],
                                                        "host_ids": ["acme, qvcc\nsikorsky"],
                                                        "audiences": ["students", "educators"]}, "p")
    assert scheduled["starts_at"] == "2026-03-10T14:00Z" and scheduled["capacity"] == 25
    assert scheduled["host_ids"] == ["acme", "qvcc", "sikorsky"] and scheduled["audiences"] == ["students", "educators"]
    attendance = data_of(RECORDS["attendance-recorded"], {"counts.students": ["12"], "counts.employers": [""]}, "p")
    assert attendance["counts"] == {"students": 12}


def test_errors_are_put_next_to_the_field_they_name():
    by_field, other = field_errors(RECORDS["hire-recorded"], [
        {"field": "data.hourly_wage", "message": "Input should be a valid number"},
        {"field": "data.employer_id", "message": "not a member"},
        {"field": "source", "message": "not yours"}])
    assert by_field == {"hourly_wage": "Input should be a valid number", "employer_id": "not a member"}
    assert other == ["not yours"]
