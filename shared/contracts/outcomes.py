"""Talent outcomes: hires, placements, training, credentials, apprenticeships, retention.
People appear only as pseudonymous ids that the reporting partner system assigns."""

from typing import Any

from pydantic import Field

from shared.contracts.base import Day, Id, Name, Part, PartnershipEvent, SocCode, Source, Timestamp
from shared.contracts.bounds import Wage


class HireRecorded(PartnershipEvent):
    hire_id: Id
    person_id: Id
    employer_id: Id
    soc_code: SocCode
    start_date: Day
    hourly_wage: Wage | None = None  # starting wage
    resident: bool  # lives in the partnership's region: the local hire rate counts these
    career_changer: bool = False
    source_activity_id: Id | None = None
    programme_id: Id | None = None


class PlacementRecorded(PartnershipEvent):
    placement_id: Id
    person_id: Id
    programme_id: Id
    provider_id: Id
    employer_id: Id
    soc_code: SocCode
    start_date: Day
    hourly_wage: Wage | None = None  # starting wage


class TrainingEnrolled(PartnershipEvent):
    person_id: Id
    programme_id: Id
    provider_id: Id
    enrolled_on: Day


class TrainingCompleted(PartnershipEvent):
    person_id: Id
    programme_id: Id
    provider_id: Id
    completed_on: Day


class CredentialEarned(PartnershipEvent):
    person_id: Id
    credential: Name
    provider_id: Id
    earned_on: Day


class ApprenticeshipStarted(PartnershipEvent):
    person_id: Id
    employer_id: Id
    soc_code: SocCode
    programme_id: Id | None = None
    started_on: Day


class RetentionChecked(PartnershipEvent):
    """Whether the person hired in `hire_id` still works for the same employer on `checked_on`."""

    hire_id: Id
    person_id: Id
    employer_id: Id
    checked_on: Day
    still_employed: bool


class SeparationRecorded(PartnershipEvent):
    hire_id: Id
    person_id: Id
    employer_id: Id
    separated_on: Day


class VoidedRecord(Part):
    """What a voided record said, as the events service accepted it."""

    type: str = Field(min_length=1, max_length=200)
    time: Timestamp
    data: dict[str, Any]


class OutcomeVoided(PartnershipEvent):
    """A recorded outcome taken back (recorded by mistake, or twice under two ids). It stays in
    history and lineage; every KPI leaves it out from then on. A correction is a void followed
    by the corrected record. Senders name the record; the events service adds what it said
    (`voided`) from its log of accepted events, so a KPI is always undone by exactly that."""

    voided_source: Source
    voided_id: str = Field(min_length=1, max_length=200)  # a CloudEvents id, as in the envelope
    reason: Name
    voided: VoidedRecord | None = None  # set by the events service, never by a sender


# What an OutcomeVoided may take back: records that only add to counts, so a KPI is undone
# exactly. Not retention checks and separations: their facts keep the latest check and the
# earliest end, which no later event can take back.
VOIDABLE: tuple[type[PartnershipEvent], ...] = (HireRecorded, PlacementRecorded, TrainingEnrolled, TrainingCompleted,
                                                CredentialEarned, ApprenticeshipStarted)
