"""The recording forms derived from the event contracts: fields, typed text to data, errors to fields."""

from datetime import datetime
from zoneinfo import ZoneInfo

from services.metrics.forms import RECORDS, data_of, field_errors, row_of, typed_of, values_of
from services.metrics.roster import FORMS, api_errors, request_of
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
    assert scheduled["starts_at"].input == "datetime-local" and scheduled["starts_at"].label == "Starts at"
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
    assert scheduled["starts_at"] == "2026-03-10T14:00:00+00:00" and scheduled["capacity"] == 25
    assert scheduled["host_ids"] == ["acme", "qvcc", "sikorsky"] and scheduled["audiences"] == ["students", "educators"]
    attendance = data_of(RECORDS["attendance-recorded"], {"counts.students": ["12"], "counts.employers": [""]}, "p")
    assert attendance["counts"] == {"students": 12}


def test_errors_are_put_next_to_the_field_they_name():
    by_field, other = field_errors(RECORDS["hire-recorded"].fields, [
        {"field": "data.hourly_wage", "message": "Input should be a valid number"},
        {"field": "data.employer_id", "message": "not a member"},
        {"field": "source", "message": "not yours"}])
    assert by_field == {"hourly_wage": "Input should be a valid number", "employer_id": "not a member"}
    assert other == ["not yours"]


def test_a_record_fills_its_form_back_as_it_was_typed():
    hire = RECORDS["hire-recorded"]
    said = {"partnership_id": "p", "hire_id": "h-1", "person_id": "p-1", "employer_id": "acme", "soc_code": "51-4041",
            "start_date": "2026-01-10", "hourly_wage": 24.5, "resident": True, "career_changer": False}
    assert data_of(hire, typed_of(hire, said), "p") == said
    tour = RECORDS["activity-scheduled"]
    typed = typed_of(tour, {"starts_at": "2026-03-10T14:00:00Z", "host_ids": ["acme", "qvcc"],
                            "audiences": ["students"]})
    assert typed == {"starts_at": ["2026-03-10T14:00"], "host_ids": ["acme\nqvcc"], "audiences": ["students"]}
    counts = typed_of(RECORDS["attendance-recorded"], {"counts": {"students": 12}})
    assert counts == {"counts.students": ["12"]}


def test_records_read_as_rows_with_what_may_still_be_taken_back():
    hire = {"source": "/keys/ab12", "id": "e-1", "type": "org.backbone.hire.recorded.v1",
            "time": "2026-03-04T14:05:09+00:00", "data": {"partnership_id": "p", "hire_id": "h-1", "resident": True}}
    row = row_of(hire)
    assert (row.what, row.when, row.who, row.details) == ("Hire recorded", "2026-03-04 14:05 UTC", "key ab12",
                                                          "hire h-1 · resident yes")
    assert row.voidable and row.correct_slug == "hire-recorded"
    assert not row_of(hire | {"voided_by": "v-1"}).voidable
    tour = row_of({"source": "/ats", "id": "e-2", "type": "org.backbone.activity.completed.v1",
                   "time": "2026-03-04T14:05", "data": {"completed_at": "2026-03-04T16:00:00Z"}})
    assert (tour.who, tour.voidable, tour.correct_slug, tour.details) == ("/ats", False, None,
                                                                         "completed at 2026-03-04 16:00 UTC")


def test_roster_forms_put_their_path_fields_in_the_path_and_errors_by_field():
    leave = FORMS["member-left"]
    assert request_of(leave, {"membership_id": ["m/1 x"], "left_on": ["2026-01-15"]}, "sw-mp") == (
        "/partnerships/sw-mp/members/m%2F1%20x/leave", {"left_on": "2026-01-15"})
    assert request_of(FORMS["target-removed"], {"kpi": ["hires"], "period": ["PY2025"]}, "sw-mp") == (
        "/partnerships/sw-mp/targets/hires/PY2025", None)
    assert request_of(FORMS["key-issued"], {"label": ["ATS"], "role": ["viewer"]}, "sw-mp")[1] == {
        "label": "ATS", "role": "viewer", "partnership_ids": ["sw-mp"]}
    assert FORMS["team-changed"].method == "PATCH" and not any(f.required for f in FORMS["team-changed"].fields[1:])
    assert {f.name: f.options for f in FORMS["target-set"].fields}["kpi"][:1] == ("employers_engaged",)
    errors = api_errors({"detail": [{"loc": ["body", "value"], "msg": "Input should be a valid number"}]})
    assert field_errors(FORMS["target-set"].fields, errors) == ({"value": "Input should be a valid number"}, [])
    assert api_errors({"detail": "'acme' is a member since 2025-08-01"}) == [
        {"message": "'acme' is a member since 2025-08-01"}]


def test_times_are_typed_and_shown_in_the_installations_time_zone():
    eastern = ZoneInfo("America/New_York")
    tour = RECORDS["activity-scheduled"]
    typed = {"starts_at": ["2026-03-10T09:00"], "ends_at": ["2026-07-10T09:00"]}  # EST, then EDT
    data = data_of(tour, typed, "p", eastern)
    assert (data["starts_at"], data["ends_at"]) == ("2026-03-10T09:00:00-04:00", "2026-07-10T09:00:00-04:00")
    assert typed_of(tour, {"starts_at": "2026-01-10T14:00:00Z"}, eastern) == {"starts_at": ["2026-01-10T09:00"]}
    assert data_of(tour, {"starts_at": ["2026-01-10T14:00Z"]}, "p", eastern)["starts_at"] == "2026-01-10T14:00:00+00:00"
    row = row_of({"source": "/ats", "id": "e", "type": "org.backbone.activity.rescheduled.v1",
                  "time": datetime(2026, 1, 10, 14, 5), "data": {"starts_at": "2026-07-01T13:00:00Z"}}, eastern)
    assert (row.when, row.details) == ("2026-01-10 09:05 EST", "starts at 2026-07-01 09:00 EDT")


def test_nested_records_are_typed_one_per_line_between_bars():
    survey = RECORDS["demand-survey-responded"]  # its openings are rows: the survey has a form now
    openings = {f.name: f for f in survey.fields}["openings"]
    assert openings.input == "rows" and [p.name for p in openings.parts] == ["soc_code", "openings", "skills"]
    typed = {"survey_round": ["2026-spring"], "employer_id": ["acme"], "responded_on": ["2026-03-02"],
             "openings": ["51-4041 | 6 | CNC setup, blueprint reading\n\n17-3026 | 2"]}
    data = data_of(survey, typed, "p")
    assert data["openings"] == [{"soc_code": "51-4041", "openings": 6, "skills": ["CNC setup", "blueprint reading"]},
                                {"soc_code": "17-3026", "openings": 2}]
    assert data_of(survey, typed_of(survey, data), "p") == data
    team = {f.name: f for f in FORMS["team-formed"].fields}
    assert team["objective"].input == "textarea" and team["items"].input == "rows"
    typed = {"items": ["quick_win | Map CNC skills | 2026-12-15 | acme | yes\nlong_term | Launch a hub"]}
    assert values_of((team["items"],), typed)["items"] == [
        {"kind": "quick_win", "title": "Map CNC skills", "due": "2026-12-15", "owner_id": "acme", "done": True},
        {"kind": "long_term", "title": "Launch a hub", "done": False}]
