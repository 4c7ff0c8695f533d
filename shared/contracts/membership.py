"""The roster and the common agenda: regions, sectors, partnerships, organisations, members,
action teams and the targets of a partnership's roadmap. Personal data (contacts) never travels."""

from pydantic import Field

from shared.contracts.base import (
    AccessRole,
    ActionTeamStatus,
    Day,
    EventData,
    Id,
    MembershipRole,
    Naics,
    Name,
    OrganisationKind,
    PartnershipEvent,
    PartnershipStage,
    Source,
    Text,
)
from shared.contracts.bounds import Amount, PeriodLabel


class RegionDefined(EventData):
    region_id: Id
    name: Name
    state: str = Field(pattern=r"^[A-Z]{2}$")


class SectorDefined(EventData):
    sector_id: Id
    name: Name
    naics: list[Naics] = Field(default_factory=list, max_length=50)


class PartnershipState(PartnershipEvent):
    """The whole current state of a partnership, so a consumer never needs to ask for it."""

    name: Name
    region_id: Id
    sector_id: Id
    stage: PartnershipStage
    launch_date: Day | None = None
    convener_id: Id | None = None
    vision: Text | None = None
    mission: Text | None = None
    priorities: list[Name] = Field(default_factory=list)


class PartnershipCreated(PartnershipState):
    pass


class PartnershipUpdated(PartnershipState):
    pass


class OrganisationState(EventData):
    organisation_id: Id
    name: Name  # organisations are public bodies and companies, not people
    kind: OrganisationKind
    size_band: str | None = Field(default=None, max_length=20)  # the bounds of membership's input
    naics: Naics | None = None
    county: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class OrganisationRegistered(OrganisationState):
    pass


class OrganisationUpdated(OrganisationState):
    pass


class MemberJoined(PartnershipEvent):
    membership_id: Id
    organisation_id: Id
    organisation_kind: OrganisationKind
    role: MembershipRole
    joined_on: Day


class MemberLeft(PartnershipEvent):
    membership_id: Id
    organisation_id: Id
    organisation_kind: OrganisationKind
    left_on: Day


class ActionTeamState(PartnershipEvent):
    action_team_id: Id
    name: Name
    priority: Name | None = None
    objective: Text | None = None
    status: ActionTeamStatus
    member_ids: list[Id] = Field(default_factory=list)


class ActionTeamFormed(ActionTeamState):
    pass


class ActionTeamChanged(ActionTeamState):
    pass


class TargetSet(PartnershipEvent):
    """A roadmap target, e.g. 40 hires in program year 2025 (PY2025 runs 1 July 2025 - 30 June 2026)."""

    kpi: Id
    period: PeriodLabel
    value: Amount


class TargetRemoved(PartnershipEvent):
    """A roadmap target taken off: its KPI is no longer measured against a goal in that period."""

    kpi: Id
    period: PeriodLabel


class AccessKeyIssued(EventData):
    """An API key's verifier, so every service can authenticate callers without asking
    membership. Only the SHA-256 of a 256-bit random secret travels: it cannot be reversed."""

    key_id: Id
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: AccessRole
    partnership_ids: list[Id] = Field(default_factory=list)
    label: Name
    # CloudEvents `source`s this key may send (besides its own `/keys/<key_id>`): a partner
    # system's events are deduplicated by (source, id), so a source belongs to one system.
    sources: list[Source] = Field(default_factory=list, max_length=20)


class AccessKeyRevoked(EventData):
    key_id: Id
