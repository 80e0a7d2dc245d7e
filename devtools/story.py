"""The demo's script: what happens in the generated recordings, and what the local fake Gemini
answers about them.

One source of truth for both sides: `devtools.media.make_scripted_screenshare` and
`make_scripted_webcam` draw these events into the recordings (typing, a terminal error, an
AI-assistant page, a large paste, idle minutes; a covered camera, a lost chunk, a second
voice), and `scripted_answer` makes the fake answer MAP calls with the events inside the clip
it was asked about and REDUCE calls with the whole story, so the demo's reports read like real
ones and the tests can check their content end to end. Every answer says it came from the
local fake. Standard library only (the fake imports this).

Times are seconds on the recording clock (task) or the test clock (proctor).
"""

from __future__ import annotations

import copy
import re
from typing import Any

FAKE_LABEL = "[Scripted answer from the local fake Gemini, not a real model]"

# ------------------------------------------------------------------ the screen recording
TASK_DURATION_S = 240.0
TASK_IDLE = ((105.0, 225.0),)  # two minutes away from the keyboard: still and silent
TASK_SCREEN: dict[str, Any] = {
    # What media.make_scripted_screenshare draws, and when.
    "typing": ((3.0, 45.0), (86.0, 98.0), (226.0, 238.0)),
    "terminal_error": (52.0, 60.0),
    "assistant_page": (62.0, 80.0),
    "large_paste_at": 82.0,
    "tests_pass": (100.0, 105.0),
}
TASK_ACTIVITIES = (
    (0.0, 45.0, "Reads the brief, then types a Flask app with a /health endpoint in VS Code."),
    (45.0, 60.0, "Runs pytest in the terminal; the first run fails with a KeyError."),
    (60.0, 82.0, "Opens an AI chat assistant in the browser and asks how to fix the error."),
    (82.0, 105.0, "Pastes a 40-line block into app.py, adjusts it and re-runs the tests: green."),
    (225.0, 240.0, "Comes back, commits with the message 'add health endpoint'."),
)
TASK_TOOLS = (
    {"name": "VS Code", "category": "editor", "evidence": "Editor window with app.py open.",
     "start_s": 0.0, "end_s": 240.0},
    {"name": "bash / pytest", "category": "terminal", "evidence": "Terminal pane running pytest.",
     "start_s": 45.0, "end_s": 105.0},
    {"name": "AI chat assistant", "category": "ai_assistant",
     "evidence": "Browser tab with a chat conversation about the KeyError.",
     "start_s": 62.0, "end_s": 80.0},
)  # fmt: skip
TASK_EVENTS = (
    {"at_s": 52.0, "kind": "error", "description": "pytest fails: KeyError: 'status' in "
     "test_health.", "evidence": "Red traceback in the terminal: KeyError: 'status'."},
    {"at_s": 64.0, "kind": "ai_assistant_use", "description": "Asks an AI chat assistant how "
     "to fix the KeyError and reads its answer.", "evidence": "Browser tab: chat with the "
     "question 'why KeyError status flask test'."},
    {"at_s": 82.0, "kind": "large_paste", "description": "About 40 lines appear in app.py at "
     "once, matching the assistant's answer.", "evidence": "Editor jumps from 12 to 52 lines "
     "in one frame."},
    {"at_s": 100.0, "kind": "test_run", "description": "pytest passes (3 tests).",
     "evidence": "Green '3 passed' line in the terminal."},
)  # fmt: skip
TASK_REPORT: dict[str, Any] = {
    "summary": (
        "The candidate built the requested endpoint and got the tests green in under two "
        "minutes of work, but the fix for the failing test was pasted from an AI chat "
        "assistant rather than written; the candidate was then away for two minutes."
    ),
    "rubric_scores": [
        {"criterion": "Correctness", "score": 4, "rationale": "The endpoint works and the "
         "tests pass at the end.", "evidence_s": [100.0]},
        {"criterion": "Test coverage", "score": 3, "rationale": "Runs the given tests but adds "
         "none of their own.", "evidence_s": [52.0, 100.0]},
        {"criterion": "Clarity of commits", "score": 3, "rationale": "One commit with a clear "
         "message at the end.", "evidence_s": [230.0]},
        {"criterion": "Use of documentation", "score": 2, "rationale": "Asked an AI assistant "
         "instead of reading the Flask docs, and pasted its answer.", "evidence_s": [64.0, 82.0]},
    ],
    "integrity_flags": [
        {"type": "ai_assistance", "severity": "medium", "description": "An AI chat assistant "
         "was consulted about the failing test.", "evidence_s": [64.0]},
        {"type": "external_code_paste", "severity": "high", "description": "A 40-line block "
         "was pasted at once, matching the assistant's answer.", "evidence_s": [82.0]},
    ],
    "strengths": ["Reads the failing test's output before changing code.",
                  "Re-runs the tests after every change."],
    "concerns": ["The fix was pasted from an AI assistant, not written.",
                 "Two idle minutes (1:45-3:45) with no activity on screen."],
}  # fmt: skip

# ------------------------------------------------------------------ the webcam
WEBCAM_DURATION_S = 36.0
WEBCAM_CHUNK_S = 3.0
WEBCAM_COVERED = (9.0, 18.0)  # a hand over the camera: black picture
WEBCAM_LOST_CHUNKS = (7,)  # 21-24 s never uploaded: a recording gap
WEBCAM_SECOND_VOICE = (26.0, 33.0)  # espeak-ng, mixed into an otherwise quiet room
SECOND_VOICE_TEXT = "Psst. The answer to question three is B. And four is C."
PROCTOR_OBSERVATIONS = (
    {"type": "looking_away", "start_s": 3.0, "end_s": 6.5, "confidence": 0.6,
     "description": "The candidate looks down and to the left for about three seconds."},
    {"type": "camera_covered", "start_s": 9.0, "end_s": 18.0, "confidence": 0.95,
     "description": "The picture goes black: something covers the camera for nine seconds."},
    {"type": "other_voice", "start_s": 26.0, "end_s": 33.0, "confidence": 0.9,
     "description": "A second voice, not the candidate's, says: 'the answer to question three "
     "is B'."},
)  # fmt: skip
PROCTOR_REPORT: dict[str, Any] = {
    "summary": (
        "Someone else in the room read out answers during the test (0:26-0:33), and the "
        "camera was covered for nine seconds shortly before; three seconds of the recording "
        "were lost in upload."
    ),
    "integrity_level": "high",
    "integrity_reasons": [
        "A second voice dictates answers at 0:26-0:33.",
        "The camera is covered at 0:09-0:18.",
    ],
}

_WINDOW = re.compile(r"covers (\d+):(\d\d):(\d\d)-(\d+):(\d\d):(\d\d) of a")


def clip_window(prompt: str) -> tuple[float, float] | None:
    """The clip's (start, end) on the recording clock, as the MAP prompt states it."""
    match = _WINDOW.search(prompt)
    if match is None:
        return None
    h1, m1, s1, h2, m2, s2 = (int(x) for x in match.groups())
    return h1 * 3600 + m1 * 60 + s1, h2 * 3600 + m2 * 60 + s2


def answer_kind(schema: dict[str, Any] | None) -> str | None:
    """Which of the four structured outputs a response schema asks for."""
    props = set((schema or {}).get("properties") or {})
    if "rubric_scores" in props:
        return "task_reduce"
    if "notable_events" in props:
        return "task_map"
    if "integrity_level" in props:
        return "proctor_reduce"
    if "observations" in props:
        return "proctor_map"
    return None


def scripted_answer(schema: dict[str, Any] | None, prompt: str) -> dict[str, Any] | None:
    """The story's answer to one generateContent call, or None when it has none (the fake
    then synthesises one from the schema)."""
    kind = answer_kind(schema)
    if kind == "task_reduce":
        return {**copy.deepcopy(TASK_REPORT), "summary": f"{FAKE_LABEL} {TASK_REPORT['summary']}",
                "timeline": [{"start_s": a, "end_s": b, "description": d}
                             for a, b, d in TASK_ACTIVITIES]}  # fmt: skip
    if kind == "proctor_reduce":
        return {
            **copy.deepcopy(PROCTOR_REPORT),
            "summary": f"{FAKE_LABEL} {PROCTOR_REPORT['summary']}",
            "timeline": [dict(o) for o in PROCTOR_OBSERVATIONS],
        }
    window = clip_window(prompt)
    if window is None or kind is None:
        return None
    start, end = window
    if kind == "task_map":
        return _task_map(start, end)
    return _proctor_map(start, end)


def _overlaps(a: float, b: float, start: float, end: float) -> bool:
    return a < end and b > start


def _clip(value: float, start: float, end: float) -> float:
    return round(min(max(value, start), end) - start, 2)


def _task_map(start: float, end: float) -> dict[str, Any]:
    activities = [
        {"start_s": _clip(a, start, end), "end_s": _clip(b, start, end), "description": d}
        for a, b, d in TASK_ACTIVITIES
        if _overlaps(a, b, start, end)
    ]
    said = " ".join(a["description"] for a in activities) or "Nothing changes on screen."
    return {
        "summary": f"{FAKE_LABEL} {said}",
        "activities": activities,
        "tools_used": [
            {k: t[k] for k in ("name", "category", "evidence")}
            for t in TASK_TOOLS
            if _overlaps(t["start_s"], t["end_s"], start, end)
        ],
        "notable_events": [
            {**e, "at_s": _clip(e["at_s"], start, end)}
            for e in TASK_EVENTS
            if start <= e["at_s"] < end
        ],
    }


def _proctor_map(start: float, end: float) -> dict[str, Any]:
    seen = [o for o in PROCTOR_OBSERVATIONS if _overlaps(o["start_s"], o["end_s"], start, end)]
    covered = max(0.0, min(end, WEBCAM_COVERED[1]) - max(start, WEBCAM_COVERED[0]))
    said = " ".join(o["description"] for o in seen) or "The candidate works quietly, alone."
    return {
        "summary": f"{FAKE_LABEL} {said}",
        "candidate_visible_fraction": round(1.0 - covered / max(end - start, 1.0), 2),
        "max_people_visible": 1,
        "observations": [
            {
                **o,
                "start_s": _clip(o["start_s"], start, end),
                "end_s": _clip(o["end_s"], start, end),
            }
            for o in seen
        ],
    }
