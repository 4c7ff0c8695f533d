"""Employer demand: expected openings by occupation, from a partnership's survey rounds."""

from pydantic import Field

from shared.contracts.base import Day, Id, Name, Part, PartnershipEvent, SocCode


class ExpectedOpenings(Part):
    soc_code: SocCode
    openings: int = Field(ge=0)
    skills: list[Name] = Field(default_factory=list)


class DemandSurveyResponded(PartnershipEvent):
    survey_round: Id  # e.g. 2026-spring
    employer_id: Id
    responded_on: Day
    openings: list[ExpectedOpenings] = Field(min_length=1)
