"""What callers send to the membership service's API: the validated shapes of request bodies (and
of a roster row's organisation). The service validates with them and the KPI pages derive their
roster forms from them, hence here, among the contracts. Unknown fields are refused, so a typo is
a 422 naming it, not a silent drop."""

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.contracts.base import (
    AccessRole,
    ActionTeamStatus,
    Day,
    Id,
    MembershipRole,
    Naics,
    Name,
    OrganisationKind,
    PartnershipStage,
    Source,
    Text,
)
from shared.contracts.bounds import Amount, PeriodLabel

Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value):
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


NotNull = AfterValidator(_not_null)  # for patch fields whose entity always has a value


# --- regions, sectors, partnerships, targets ---------------------------------------------------

class RegionIn(Input):
    id: Id
    name: Name
    state: str = Field(pattern=r"^[A-Z]{2}$")


class SectorIn(Input):
    id: Id
    name: Name
    naics: list[Naics] = Field(default_factory=list, max_length=50)


class PartnershipIn(Input):
    id: Id
    name: Name
    region_id: Id
    sector_id: Id
    stage: PartnershipStage = PartnershipStage.PLANNING
    vision: Text | None = None
    mission: Text | None = None
    launch_date: Day | None = None
    convener_id: Id | None = None
    priorities: list[Name] = Field(default_factory=list, max_length=50)


class PartnershipPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    stage: Annotated[PartnershipStage | None, NotNull] = None
    vision: Text | None = None
    mission: Text | None = None
    launch_date: Day | None = None
    convener_id: Id | None = None
    priorities: Annotated[list[Name] | None, NotNull] = Field(default=None, max_length=50)


class TargetIn(Input):
    kpi: Id = Field(description="A KPI of the catalogue (GET /kpis on the metrics service), e.g. hires")
    period: PeriodLabel = Field(description="PY2025 (1 July 2025 - 30 June 2026), 2025-Q3 or 2025-09")
    value: Amount


# --- organisations, memberships, contacts -----------------------------------------------------

class OrganisationIn(Input):
    id: Id
    name: Name
    kind: OrganisationKind
    size_band: str | None = Field(default=None, max_length=20)
    naics: Naics | None = None
    county: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    champion: bool = Field(default=False, description="a spearheading employer of a partnership")


class OrganisationPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    kind: Annotated[OrganisationKind | None, NotNull] = None
    size_band: str | None = Field(default=None, max_length=20)
    naics: Naics | None = None
    county: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    champion: Annotated[bool | None, NotNull] = None


class MembershipIn(Input):
    organisation_id: Id
    role: MembershipRole = MembershipRole.MEMBER
    joined_on: Day


class MembershipLeave(Input):
    left_on: Day


class ContactIn(Input):
    id: Id
    partnership_id: Id | None = Field(
        default=None, description="the partnership that keeps this contact; required unless the key has only one")
    name: Name
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=40)
    role: Name | None = None
    consent: bool = Field(default=False, description="agreed to be contacted by the partnership")


class ContactPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=40)
    role: Name | None = None
    consent: Annotated[bool | None, NotNull] = None


# --- action teams -----------------------------------------------------------------------------

class ItemKind(StrEnum):
    QUICK_WIN = "quick_win"
    LONG_TERM = "long_term"


class ActionItem(Input):
    kind: ItemKind
    title: Name
    due: Day | None = None
    owner_id: Id | None = Field(default=None, description="the organisation that owns it")
    done: bool = False


class ActionTeamIn(Input):
    id: Id
    name: Name
    priority: Name | None = None
    objective: Text | None = None
    status: ActionTeamStatus = ActionTeamStatus.ACTIVE
    member_ids: list[Id] = Field(default_factory=list, max_length=500, description="organisation ids")
    items: list[ActionItem] = Field(default_factory=list, max_length=200)


class ActionTeamPatch(Input):
    name: Annotated[Name | None, NotNull] = None
    priority: Name | None = None
    objective: Text | None = None
    status: Annotated[ActionTeamStatus | None, NotNull] = None
    member_ids: Annotated[list[Id] | None, NotNull] = Field(default=None, max_length=500)
    items: Annotated[list[ActionItem] | None, NotNull] = Field(default=None, max_length=200)


# --- access keys ------------------------------------------------------------------------------

class KeyIn(Input):
    label: Name
    role: AccessRole
    partnership_ids: list[Id] = Field(default_factory=list, max_length=100)
    sources: list[Source] = Field(
        default_factory=list, max_length=20,
        description="CloudEvents sources a partner system sends as (besides the key's own /keys/<id>)")
