"""Building blocks shared by all payload models."""

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.contracts.bounds import Day, Moment

# Opaque identifiers: slugs, UUIDs or a partner system's own keys. Never names or e-mail addresses.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

# O*NET-SOC occupation code, e.g. 51-4041 or 51-4041.00.
SocCode = Annotated[str, StringConstraints(pattern=r"^\d{2}-\d{4}(\.\d{2})?$")]

# A NAICS industry code, 2 (sector) to 6 (national industry) digits.
Naics = Annotated[str, StringConstraints(pattern=r"^\d{2,6}$")]

# A CloudEvents `source` (URI-reference) as the envelope bounds it.
Source = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^\S+$")]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=10_000)]

Timestamp = Moment  # dates and times within the window of shared.contracts.bounds
__all__ = ["Day", "Timestamp"]  # re-exported: contracts import them from here


class Part(BaseModel):
    """Immutable and strict about unknown fields, so a partner's typo is reported, not dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EventData(Part):
    """Base of every payload; `shared.catalog` gives each subclass its type name and topic."""


class PartnershipEvent(EventData):
    """A payload that belongs to one partnership; its id is the Kafka partition key."""

    partnership_id: Id


class OrganisationKind(StrEnum):
    EMPLOYER = "employer"
    EDUCATION = "education"
    TRAINING_PROVIDER = "training_provider"
    CHAMBER = "chamber"
    WORKFORCE_BOARD = "workforce_board"
    ECONOMIC_DEVELOPMENT = "economic_development"
    COMMUNITY = "community"
    LABOR = "labor"
    GOVERNMENT = "government"


class MembershipRole(StrEnum):
    CHAMPION = "champion"  # spearheading employer or chair
    MEMBER = "member"
    SUPPORT_PARTNER = "support_partner"


class PartnershipStage(StrEnum):
    PLANNING = "planning"
    LAUNCHED = "launched"
    RESTRUCTURING = "restructuring"
    SUSTAINING = "sustaining"


class ActionTeamStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


class ActivityKind(StrEnum):
    PLANT_TOUR = "plant_tour"
    CAREER_DAY = "career_day"
    SCHOOL_VISIT = "school_visit"
    HIRING_EVENT = "hiring_event"
    EXECUTIVE_NETWORKING = "executive_networking"
    YOUNG_PROFESSIONAL_NETWORKING = "young_professional_networking"
    PARTNERSHIP_MEETING = "partnership_meeting"
    COMMUNITY_OF_PRACTICE_CALL = "community_of_practice_call"
    TRAINING_SESSION = "training_session"


class Audience(StrEnum):
    STUDENTS = "students"
    PARENTS = "parents"
    JOB_SEEKERS = "job_seekers"
    CAREER_CHANGERS = "career_changers"
    YOUNG_PROFESSIONALS = "young_professionals"
    EMPLOYERS = "employers"
    EDUCATORS = "educators"
    PUBLIC_PARTNERS = "public_partners"


class AccessRole(StrEnum):
    OPERATOR = "operator"  # statewide: everything
    PARTNERSHIP_ADMIN = "partnership_admin"  # manages its partnerships
    PARTNER_SYSTEM = "partner_system"  # an ATS, training provider or job board: emits and reads its partnerships
    VIEWER = "viewer"  # funders and board members: reads its partnerships, changes nothing
