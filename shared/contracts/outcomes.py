"""Talent outcomes: hires, placements, training, credentials, apprenticeships, retention.
People appear only as pseudonymous ids that the reporting partner system assigns."""

from shared.contracts.base import Day, Id, Name, PartnershipEvent, SocCode
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
