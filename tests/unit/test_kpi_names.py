"""shared/kpi_names.py is the KPI catalogue's names for services that may not import metrics:
it must equal the catalogue (services/metrics/kpis.py), or targets would be checked against a
list that drifted."""

from services.metrics import kpis
from shared.kpi_names import KPI_NAMES, unknown_kpi


def test_the_shared_names_are_the_catalogues():
    assert KPI_NAMES == {k.name: k.scalar for k in kpis.CATALOGUE}


def test_why_a_name_cannot_have_a_target():
    assert unknown_kpi("hires") is None
    assert unknown_kpi("retention_90d") == "retention_90d is not a KPI; did you mean retention_90_days?"
    assert unknown_kpi("zzz") == "zzz is not a KPI"
    assert "breakdown" in unknown_kpi("active_members")
