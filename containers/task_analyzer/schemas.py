"""Structured outputs the model must return (validated with pydantic; the SDK turns these
into the response schema). MAP times are seconds from the start of the clip the model saw;
REDUCE times are seconds from the start of the whole recording."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ToolCategory = Literal["editor", "terminal", "browser_docs", "web_search", "ai_assistant", "other"]
EventKind = Literal[
    "large_paste",
    "error",
    "test_run",
    "dead_end",
    "ai_assistant_use",
    "another_person",
    "instruction_injection",
    "other",
]
FlagType = Literal[
    "external_code_paste",
    "ai_assistance",
    "another_person",
    "grader_instruction_injection",
    "other",
]
Severity = Literal["low", "medium", "high"]


class Activity(BaseModel):
    start_s: float = Field(description="seconds from the start of this clip")
    end_s: float = Field(description="seconds from the start of this clip")
    description: str = Field(description="what the candidate is doing")


class ToolUse(BaseModel):
    name: str = Field(description="e.g. VS Code, bash, MDN, ChatGPT")
    category: ToolCategory
    evidence: str = Field(description="what on screen shows it")


class NotableEvent(BaseModel):
    at_s: float = Field(description="seconds from the start of this clip")
    kind: EventKind
    description: str
    evidence: str = Field(description="what is visible or audible, quoted where possible")


class SegmentAnalysis(BaseModel):
    """MAP: one clip of the screen recording."""

    summary: str
    activities: list[Activity]
    tools_used: list[ToolUse]
    notable_events: list[NotableEvent]


class TimelineEntry(BaseModel):
    start_s: float = Field(description="seconds from the start of the recording")
    end_s: float = Field(description="seconds from the start of the recording")
    description: str


class RubricScore(BaseModel):
    criterion: str
    score: int = Field(description="on the rubric's scale (1 poor to 5 excellent unless it says)")
    rationale: str
    evidence_s: list[float] = Field(description="timestamps (s) that support the score")


class IntegrityFlag(BaseModel):
    type: FlagType
    severity: Severity
    description: str
    evidence_s: list[float]


class TaskReport(BaseModel):
    """REDUCE: the recruiter-facing report for the whole recording."""

    summary: str
    timeline: list[TimelineEntry]
    rubric_scores: list[RubricScore]
    integrity_flags: list[IntegrityFlag]
    strengths: list[str]
    concerns: list[str]
