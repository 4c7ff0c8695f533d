"""Employer demand: expected openings by occupation, from a partnership's survey rounds."""

from pydantic import Field

from shared.contracts.base import Day, Id, Name, Part, PartnershipEvent, SocCode
from shared.contracts.bounds import Count


class ExpectedOpenings(Part):
    soc_code: SocCode
    openings: Count
    skills: list[Name] = Field(default_factory=list)


class DemandSurveyResponded(PartnershipEvent):
    survey_round: Id  # e.g. 2026-spring
    employer_id: Id
    responded_on: Day
    openings: list[ExpectedOpenings] = Field(min_length=1)
