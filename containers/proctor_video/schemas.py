"""Structured outputs the model must return (validated with pydantic; the SDK turns these
into the response schema). MAP times are seconds from the start of the clip the model saw;
REDUCE times are seconds from the start of the test (the whole recording)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# The model never reports recording gaps: only the stitcher knows about lost chunks.
ModelEventType = Literal[
    "face_absent",
    "multiple_faces",
    "different_person",
    "looking_away",
    "phone_or_device",
    "other_voice",
    "camera_covered",
    "camera_frozen",
    "other",
]
RiskLevel = Literal["low", "medium", "high"]


class Observation(BaseModel):
    type: ModelEventType
    start_s: float = Field(description="seconds from the start of this clip")
    end_s: float = Field(description="seconds from the start of this clip")
    confidence: float = Field(description="0.0 (unsure) to 1.0 (certain)")
    description: str = Field(description="what is seen or heard, concretely")


class SegmentObservations(BaseModel):
    """MAP: one clip of the webcam recording."""

    summary: str = Field(description="one or two factual sentences about this clip")
    candidate_visible_fraction: float = Field(
        description="share of the clip (0.0-1.0) in which the candidate's face is visible"
    )
    max_people_visible: int = Field(description="most people visible at any one time")
    observations: list[Observation]


class TimelineEvent(BaseModel):
    type: ModelEventType
    start_s: float = Field(description="seconds from the start of the test")
    end_s: float = Field(description="seconds from the start of the test")
    confidence: float = Field(description="0.0 (unsure) to 1.0 (certain)")
    description: str


class ProctorSummary(BaseModel):
    """REDUCE: the whole test."""

    summary: str = Field(description="three sentences at most, for a recruiter")
    timeline: list[TimelineEvent] = Field(description="merged, de-duplicated events in time order")
    integrity_level: RiskLevel
    integrity_reasons: list[str] = Field(description="why this level, each citing times")
