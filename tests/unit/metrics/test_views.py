"""The pages' pure parts: tables, sorting, formats, charts, upcoming activities."""


from zoneinfo import ZoneInfo

from services.metrics import views


def table() -> views.Table:
    return views.Table("t", "T", [("id", "Id"), ("hires", "Hires")],
                       [{"id": "a", "hires": 3}, {"id": "b", "hires": None}, {"id": "c", "hires": 7}])


def test_sorting_keeps_blanks_last_either_way_and_ignores_unknown_columns():
    assert [r["id"] for r in table().sorted_by("hires", True).rows] == ["c", "a", "b"]
    assert [r["id"] for r in table().sorted_by("hires", False).rows] == ["a", "c", "b"]
    assert [r["id"] for r in table().sorted_by("nope", True).rows] == ["a", "b", "c"]


def test_exports_carry_the_raw_values():
    assert table().csv() == "Id,Hires\na,3\nb,\nc,7\n"
    assert table().json()["rows"][1] == {"id": "b", "hires": None}


def test_formats_by_unit():
    assert (views.fmt(0.625, "ratio"), views.fmt(24.5, "usd_per_hour"), views.fmt(1200.0, "count"),
            views.fmt(None, "count")) == ("62%", "$24.50/h", "1,200", "–")


def test_the_periods_of_a_program_year_by_grain():
    assert views.grain_periods("PY2025", "quarter") == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"]
    assert len(views.grain_periods("PY2025", "month")) == 12 and views.grain_periods("PY2025", "year") == ["PY2025"]


def test_a_chart_is_an_image_with_a_short_summary_not_every_value():
    svg = views.bar_chart([("2025-Q3", 4), ("2025-Q4", None), ("2026-Q1", 8)], "Hires by quarter", "count")
    assert 'role="img"' in svg and "<title" in svg and svg.count("<rect") == 3
    assert "highest 8 in 2026-Q1" in svg and "2025-Q3: 4; 2025-Q4" not in svg
    assert 'class="target"' not in svg


def test_a_chart_draws_the_target_and_thins_out_its_labels():
    months = [(f"2026-{m:02d}", m) for m in range(1, 13)]
    svg = views.bar_chart(months, "Hires by month", "count", target=20)
    assert 'class="target"' in svg and "target 20" in svg and "Target 20." in svg
    assert svg.count('class="axis"') - 2 <= 4  # month labels, besides the top value and the target
    assert views.chart_summary([("2026-01", None)], "count") == "No data yet for these periods."


def test_cells_show_no_python_values():
    assert [views.cell(v) for v in (False, True, 40.0, None, 2.5, "plant tour")] == \
        ["No", "Yes", "40", "—", "2.5", "plant tour"]


def test_upcoming_activities_leave_out_closed_and_past_ones_and_follow_reschedules():
    latest = {
        "activity:a": ["", "", {"title": "Tour A", "kind": "plant_tour"}],
        "activity_time:a": ["", "", "2026-12-01T15:00:00+00:00"],
        "activity:b": ["", "", {"title": "Fair B", "kind": "hiring_event"}],
        "activity_time:b": ["", "", "2026-11-30T09:00:00+00:00"],
        "activity:c": ["", "", {"title": "Cancelled", "kind": "career_day"}],
        "activity_time:c": ["", "", "2026-12-02T09:00:00+00:00"],
        "activity_closed:c": ["", "", "cancelled"],
        "activity:d": ["", "", {"title": "Past", "kind": "career_day"}],
        "activity_time:d": ["", "", "2026-01-02T09:00:00+00:00"],
    }
    rows = views.upcoming_activities(views.scheduled(latest), "2026-11-25T00:00:00+00:00", ZoneInfo("America/Denver"))
    assert [(r["title"], r["kind"], r["starts_at"]) for r in rows] == [
        ("Fair B", "hiring event", "2026-11-30 02:00 MST"), ("Tour A", "plant tour", "2026-12-01 08:00 MST")]


def test_csv_exports_neutralise_formula_cells_but_keep_numbers():
    names = views.Table("t", "T", [("name", "Name"), ("hires", "Hires")],
                        [{"name": '=HYPERLINK("http://x")', "hires": -3}, {"name": "@SUM(A1)", "hires": 2}])
    assert names.csv() == 'Name,Hires\n"\'=HYPERLINK(""http://x"")",-3\n\'@SUM(A1),2\n'
