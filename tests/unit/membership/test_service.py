"""The membership use cases over an in-memory store: who may read and change what across
partnerships (issue 16), without a server."""

from datetime import date

import pytest

from services.membership.service import REGIONS, SECTORS, MembershipService
from services.membership.store import Change, Window
from shared.auth import Principal
from shared.contracts import requests as s
from shared.contracts.base import AccessRole
from shared.errors import Conflict, Invalid, NotAllowed, NotFound
from tests.unit.membership.fake_store import FakeStore

OPERATOR = Principal("op", AccessRole.OPERATOR)
ADMIN_A = Principal("admin-a", AccessRole.PARTNERSHIP_ADMIN, frozenset({"a"}))
ADMIN_B = Principal("admin-b", AccessRole.PARTNERSHIP_ADMIN, frozenset({"b"}))
ADMIN_AC = Principal("admin-ac", AccessRole.PARTNERSHIP_ADMIN, frozenset({"a", "c"}))
SYSTEM_A = Principal("system-a", AccessRole.PARTNER_SYSTEM, frozenset({"a"}))
VIEWER_A = Principal("viewer-a", AccessRole.VIEWER, frozenset({"a"}))
ALL = Window(0, 500)
JOINED = date(2024, 1, 1)


def organisation(id: str, **fields) -> s.OrganisationIn:
    return s.OrganisationIn(id=id, name=id.title(), kind="employer", **fields)


@pytest.fixture
async def world() -> MembershipService:
    """Partnerships a, b and c; `mine` is only in a, `theirs` only in b, `shared` in both,
    `loose` in none. B's admin entered a contact of `theirs`; an old contact has no partnership."""
    service = MembershipService(FakeStore(), "/backbone/membership")
    await service.define_reference(OPERATOR, REGIONS, s.RegionIn(id="r", name="Region", state="CT"))
    await service.define_reference(OPERATOR, SECTORS, s.SectorIn(id="m", name="Manufacturing"))
    for pid in ("a", "b", "c"):
        await service.create_partnership(
            OPERATOR, s.PartnershipIn(id=pid, name=pid.upper(), region_id="r", sector_id="m")
        )
    for oid in ("mine", "theirs", "shared", "loose"):
        await service.register_organisation(OPERATOR, organisation(oid))
    for pid, oid in (("a", "mine"), ("b", "theirs"), ("a", "shared"), ("b", "shared")):
        await service.join(OPERATOR, pid, s.MembershipIn(organisation_id=oid, joined_on=JOINED))
    await service.add_contact(ADMIN_B, "theirs", s.ContactIn(id="c-b", name="Bea Example", email="bea@example.org"))
    await service.store.commit(Change().insert("contacts", {"_id": "c-old", "organisation_id": "theirs",
                                                            "name": "Old Example"}))
    return service


async def test_joining_another_partnerships_organisation_exposes_none_of_its_contacts(world):
    await world.join(ADMIN_A, "a", s.MembershipIn(organisation_id="theirs", joined_on=JOINED))
    assert (await world.list_contacts(ADMIN_A, "theirs", ALL)).total == 0
    for attempt in (world.get_contact(ADMIN_A, "c-b"), world.update_contact(ADMIN_A, "c-b", s.ContactPatch(name="X")),
                    world.get_contact(ADMIN_A, "c-old")):
        with pytest.raises(NotFound):
            await attempt
    await world.add_contact(ADMIN_A, "theirs", s.ContactIn(id="c-a", name="Al Example"))
    assert [c["id"] for c in (await world.list_contacts(ADMIN_A, "theirs", ALL)).items] == ["c-a"]
    assert [c["id"] for c in (await world.list_contacts(ADMIN_B, "theirs", ALL)).items] == ["c-b"]
    assert [c["id"] for c in (await world.list_contacts(OPERATOR, "theirs", ALL)).items] == ["c-a", "c-b", "c-old"]
    assert (await world.get_contact(ADMIN_B, "c-b"))["partnership_id"] == "b"


async def test_a_contact_is_kept_by_a_partnership_the_organisation_belongs_to(world):
    with pytest.raises(Invalid) as several:
        await world.add_contact(ADMIN_AC, "mine", s.ContactIn(id="c-1", name="Cy Example"))
    assert several.value.field == "partnership_id"
    with pytest.raises(Invalid) as never:
        await world.add_contact(ADMIN_AC, "mine", s.ContactIn(id="c-1", partnership_id="c", name="Cy Example"))
    assert never.value.field == "partnership_id" and "never been a member" in never.value.reason
    with pytest.raises(NotAllowed):
        await world.add_contact(ADMIN_A, "theirs", s.ContactIn(id="c-1", partnership_id="b", name="Cy Example"))
    added = await world.add_contact(ADMIN_AC, "mine", s.ContactIn(id="c-1", partnership_id="a", name="Cy Example"))
    assert added["partnership_id"] == "a"


@pytest.mark.parametrize("caller", [SYSTEM_A, VIEWER_A])
async def test_partner_systems_and_viewers_never_see_contacts_or_keys(world, caller):
    for attempt in (world.list_contacts(caller, "mine", ALL), world.get_contact(caller, "c-b"),
                    world.add_contact(caller, "mine", s.ContactIn(id="c-9", name="No One")),
                    world.list_keys(caller, ALL), world.revoke_key(caller, "k")):
        with pytest.raises(NotAllowed):
            await attempt


async def test_an_admin_changes_only_organisations_no_other_partnership_shares(world):
    renamed = await world.update_organisation(ADMIN_A, "mine", s.OrganisationPatch(name="Mine Inc."))
    assert renamed["name"] == "Mine Inc."
    with pytest.raises(NotAllowed, match="only operators"):
        await world.update_organisation(ADMIN_A, "theirs", s.OrganisationPatch(name="Pwned"))
    with pytest.raises(NotAllowed, match="shared with other partnerships"):
        await world.update_organisation(ADMIN_A, "shared", s.OrganisationPatch(name="Pwned"))
    with pytest.raises(NotAllowed):
        await world.update_organisation(ADMIN_A, "loose", s.OrganisationPatch(name="Pwned"))
    assert (await world.update_organisation(OPERATOR, "shared", s.OrganisationPatch(name="Shared Ltd")))[
        "name"
    ] == "Shared Ltd"
    # a past membership elsewhere still shows in that roster: the organisation stays shared
    [stint] = (await world.list_members(OPERATOR, "b", ALL, organisation_id="shared")).items
    await world.leave(OPERATOR, "b", stint["id"], date(2024, 6, 30))
    with pytest.raises(NotAllowed, match="shared"):
        await world.update_organisation(ADMIN_A, "shared", s.OrganisationPatch(name="Pwned"))


async def test_a_roster_import_may_not_rename_another_partnerships_organisation(world):
    roster = (
        "organisation_id,name,kind,joined_on\ntheirs,Pwned,employer,2024-01-01\nmine,Mine Renamed,employer,2024-01-01\n"
    )
    report = await world.import_roster(ADMIN_A, "a", roster, 1)
    assert [(e["line"], "only operators" in e["reason"]) for e in report["errors"]] == [(2, True)]
    assert (report["imported"], report["organisations_updated"]) == (1, 1)
    assert (await world.get_organisation(OPERATOR, "theirs"))["name"] == "Theirs"
    assert (await world.get_organisation(OPERATOR, "mine"))["name"] == "Mine Renamed"


async def test_registering_and_the_directory(world):
    await world.register_organisation(ADMIN_A, organisation("newco"))
    for caller in (SYSTEM_A, VIEWER_A):
        with pytest.raises(NotAllowed):
            await world.register_organisation(caller, organisation("other"))
    directory = await world.list_organisations(ADMIN_A, ALL)
    assert {o["id"] for o in directory.items} == {"mine", "theirs", "shared", "loose", "newco"}
    for caller in (SYSTEM_A, VIEWER_A):
        assert {o["id"] for o in (await world.list_organisations(caller, ALL)).items} == {"mine", "shared"}
        assert (await world.get_organisation(caller, "shared"))["name"] == "Shared"
        with pytest.raises(NotAllowed):
            await world.get_organisation(caller, "theirs")


def _partnership_writes(service: MembershipService, caller: Principal, pid: str) -> list:
    """Every use case that changes partnership `pid`'s data, not yet called."""
    return [
        lambda: service.update_partnership(caller, pid, s.PartnershipPatch(name="Renamed")),
        lambda: service.set_target(caller, pid, s.TargetIn(kpi="hires", period="PY2025", value=1)),
        lambda: service.remove_target(caller, pid, "hires", "PY2025"),
        lambda: service.join(caller, pid, s.MembershipIn(organisation_id="loose", joined_on=JOINED)),
        lambda: service.leave(caller, pid, f"{pid}:mine:2024-01-01", date(2025, 1, 1)),
        lambda: service.form_team(caller, pid, s.ActionTeamIn(id="t", name="Team")),
        lambda: service.change_team(caller, pid, "t", s.ActionTeamPatch(name="Renamed")),
        lambda: service.import_roster(caller, pid, "organisation_id,name,kind,joined_on\n", 1),
        lambda: service.add_contact(caller, "mine", s.ContactIn(id="c-9", partnership_id=pid, name="No One")),
        lambda: service.issue_key(caller, s.KeyIn(label="k", role="viewer", partnership_ids=[pid])),
    ]


def _writes(service: MembershipService, caller: Principal, pid: str) -> list:
    """Every use case that changes something."""
    return _partnership_writes(service, caller, pid) + [
        lambda: service.define_reference(caller, REGIONS, s.RegionIn(id="r2", name="R2", state="CT")),
        lambda: service.redefine_reference(caller, REGIONS, "r", s.RegionIn(id="r", name="R", state="CT")),
        lambda: service.create_partnership(caller, s.PartnershipIn(id="z", name="Z", region_id="r", sector_id="m")),
        lambda: service.register_organisation(caller, organisation("newco")),
        lambda: service.update_organisation(caller, "mine", s.OrganisationPatch(name="Renamed")),
        lambda: service.update_contact(caller, "c-b", s.ContactPatch(name="Renamed")),
        lambda: service.revoke_key(caller, "k"),
    ]


@pytest.mark.parametrize("caller", [VIEWER_A, SYSTEM_A])
async def test_viewers_and_partner_systems_change_nothing_here(world, caller):
    for attempt in _writes(world, caller, "a"):
        with pytest.raises(NotAllowed):
            await attempt()


async def test_an_admin_changes_nothing_of_another_partnership_even_one_that_does_not_exist(world):
    for pid in ("b", "nowhere"):
        for attempt in _partnership_writes(world, ADMIN_A, pid):
            with pytest.raises(NotAllowed, match=pid):
                await attempt()
    for read in (world.get_partnership(ADMIN_A, "nowhere"), world.list_members(ADMIN_A, "nowhere", ALL),
                 world.export_roster(VIEWER_A, "b")):
        with pytest.raises(NotAllowed, match="partnership"):
            await read


async def test_viewers_read_their_partnership(world):
    await world.form_team(ADMIN_A, "a", s.ActionTeamIn(id="t", name="Team"))
    await world.set_target(ADMIN_A, "a", s.TargetIn(kpi="hires", period="PY2025", value=40))
    assert (await world.get_partnership(VIEWER_A, "a"))["name"] == "A"
    assert (await world.list_partnerships(VIEWER_A, ALL)).total == 1
    assert (await world.list_members(VIEWER_A, "a", ALL)).total == 2
    assert (await world.get_member(VIEWER_A, "a", "a:mine:2024-01-01"))["organisation_id"] == "mine"
    assert (await world.list_teams(VIEWER_A, "a", ALL)).total == 1
    assert (await world.get_team(VIEWER_A, "a", "t"))["name"] == "Team"
    assert (await world.list_targets(VIEWER_A, "a", ALL)).total == 1
    assert (await _exported(world, VIEWER_A, "a")).count("\n") == 3


async def test_admins_issue_viewer_and_partner_system_keys_with_their_sources(world):
    viewer = await world.issue_key(ADMIN_A, s.KeyIn(label="Board", role="viewer", partnership_ids=["a"]))
    system = await world.issue_key(ADMIN_A, s.KeyIn(label="ATS", role="partner_system", partnership_ids=["a"],
                                                    sources=["urn:ats:a"]))
    issued = world.store.events[-1].data
    assert (issued.key_id, issued.sources) == (system["id"], ["urn:ats:a"])
    assert "key_hash" not in system and system["secret"]
    with pytest.raises(NotAllowed):
        await world.issue_key(ADMIN_A, s.KeyIn(label="x", role="partnership_admin", partnership_ids=["a"]))
    with pytest.raises(Invalid):
        await world.issue_key(OPERATOR, s.KeyIn(label="x", role="viewer", partnership_ids=["nowhere"]))

    # a source belongs to one system: B may not take it; A's rotated key may
    with pytest.raises(Conflict, match="^sources: urn:ats:a"):
        await world.issue_key(ADMIN_B, s.KeyIn(label="B ATS", role="partner_system", partnership_ids=["b"],
                                               sources=["urn:ats:a", "urn:ats:b"]))
    await world.issue_key(ADMIN_A, s.KeyIn(label="ATS 2", role="partner_system", partnership_ids=["a"],
                                           sources=["urn:ats:a"]))

    # admins list and revoke their partnership's viewers, not another partnership's keys
    assert {k["label"] for k in (await world.list_keys(ADMIN_A, ALL)).items} == {"Board", "ATS", "ATS 2"}
    assert (await world.list_keys(ADMIN_B, ALL)).total == 0
    with pytest.raises(NotAllowed):
        await world.revoke_key(ADMIN_B, viewer["id"])
    assert (await world.revoke_key(ADMIN_A, viewer["id"]))["revoked_at"] is not None
    with pytest.raises(Conflict):
        await world.revoke_key(ADMIN_A, viewer["id"])
    assert (await world.list_keys(ADMIN_A, ALL, revoked=True)).total == 1


async def _exported(world, principal, partnership_id: str) -> str:
    return "".join([part async for part in await world.export_roster(principal, partnership_id)])


async def test_the_roster_export_reimports_to_the_same_values(world):
    await world.update_organisation(OPERATOR, "mine", s.OrganisationPatch(name='=HYPERLINK("http://x.example","Mine")'))
    exported = await _exported(world, ADMIN_A, "a")
    assert "'=HYPERLINK" in exported
    report = await world.import_roster(ADMIN_A, "a", exported, 1)
    assert (report["unchanged"], report["organisations_updated"], report["errors"]) == (2, 0, [])


# --- targets: checked where they are set, and removable ---------------------------------------

@pytest.mark.parametrize(("kpi", "period", "field", "says"), [
    ("retention_90d", "PY2025", "kpi", "retention_90d is not a KPI; did you mean retention_90_days?"),
    ("active_members", "PY2025", "kpi", "breakdown"),
])
async def test_a_target_names_a_kpi_and_a_period_that_can_be_measured(world, kpi, period, field, says):
    with pytest.raises(Invalid, match=says) as refused:
        await world.set_target(ADMIN_A, "a", s.TargetIn(kpi=kpi, period=period, value=1))
    assert refused.value.field == field
    assert (await world.list_targets(OPERATOR, "a", ALL)).total == 0 and not world.store.events[-1].type.endswith(
        "target.set.v1"
    )


@pytest.mark.parametrize("period", ["PY2999", "PY9999", "2025-13", "PY1899"])
def test_a_target_period_lies_in_the_bounds_window(period):
    with pytest.raises(ValueError, match="period"):
        s.TargetIn(kpi="hires", period=period, value=1)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1, 1e10])
def test_a_target_value_is_finite_and_sane(value):
    with pytest.raises(ValueError, match="value"):
        s.TargetIn(kpi="hires", period="PY2025", value=value)


async def test_a_removed_target_is_gone_and_its_removal_published(world):
    await world.set_target(ADMIN_A, "a", s.TargetIn(kpi="hires", period="PY2025", value=40))
    await world.remove_target(ADMIN_A, "a", "hires", "PY2025")
    assert (await world.list_targets(ADMIN_A, "a", ALL)).total == 0
    removed = world.store.events[-1]
    assert removed.type == "org.backbone.target.removed.v1"
    assert removed.data.model_dump() == {"partnership_id": "a", "kpi": "hires", "period": "PY2025"}
    with pytest.raises(NotFound, match="target"):
        await world.remove_target(ADMIN_A, "a", "hires", "PY2025")
