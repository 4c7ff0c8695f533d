"""The sample data (`backbone sample`) passes the checks the API applies: every region, sector,
organisation, partnership and target goes through the use cases (over the in-memory store), so a
target on a name that is not a KPI, as `retention_90d` was, cannot come back unnoticed."""

import json

from cli.membership_client import SAMPLE
from services.membership.service import REGIONS, SECTORS, MembershipService
from shared.auth import Principal
from shared.contracts import requests as s
from shared.contracts.base import AccessRole
from tests.unit.membership.fake_store import FakeStore

OPERATOR = Principal("op", AccessRole.OPERATOR)


async def test_the_sample_data_passes_validation():
    sample = json.loads(SAMPLE.read_text())
    service = MembershipService(FakeStore(), "/backbone/membership")
    for region in sample["regions"]:
        await service.define_reference(OPERATOR, REGIONS, s.RegionIn.model_validate(region))
    for sector in sample["sectors"]:
        await service.define_reference(OPERATOR, SECTORS, s.SectorIn.model_validate(sector))
    for org in sample["organisations"]:
        await service.register_organisation(OPERATOR, s.OrganisationIn.model_validate(
            {k: v for k, v in org.items() if v is not None}))
    targets = 0
    for partnership in sample["partnerships"]:
        await service.create_partnership(OPERATOR, s.PartnershipIn.model_validate(
            {k: v for k, v in partnership.items() if k != "targets"}))
        for target in partnership.get("targets", []):
            await service.set_target(OPERATOR, partnership["id"], s.TargetIn.model_validate(target))
            targets += 1
    assert targets == sum(len(p.get("targets", [])) for p in sample["partnerships"]) > 0
