"""Faces in the webcam picture: nobody there, more than one person, the face far aside.

The detector is OpenCV's frontal-face Haar cascade, whose model ships inside the
`opencv-python-headless` wheel (nothing is downloaded). It runs on a small grey picture a
few times a second (the signals pass's ffmpeg hands the frames over, see
`proctor_video.signals`), and each frame becomes a `FaceSample`.

A cascade misses a face that is partly hidden (a hand at the chin, a mug), so "no face" is
not yet "nobody there": the picture where the face was last seen (head and shoulders) is
compared with how it looked then. Still much the same (normalised correlation) → the person
is there, the face is hidden; changed → absent. A frame much darker and flatter than the
scene was when the face was last seen is a hand over the lens (dark, but not the black that
blackdetect needs): covered, not absent. An exposure jump is as dark for a moment only.

`face_findings` (pure) turns the samples into intervals on the test clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from analysis_engine import intervals as iv
from analysis_engine.models import Interval

FACE_FPS = 2.0  # samples per second: events last 2 s or more
FACE_WIDTH = 320  # the picture the cascade sees (a webcam face is 50-150 px wide there)
CASCADE = "haarcascade_frontalface_default.xml"
# dev (50 scenes, 3246 frames): 1.1 finds the second face in 92% of its frames, 1.2 in
# 82%, for ~1.7x the time; neither finds a second face where there is none for 2 s.
SCALE_FACTOR = 1.1
MIN_NEIGHBOURS = 4
MIN_FACE = 0.1  # of the frame's width: smaller "faces" are texture, not a candidate
# The region compared to tell "absent" from "hidden": the face box widened to the shoulders.
REGION_GROW = (1.0, 0.4, 1.4)  # (sides, up, down) in face widths
PRESENT_NCC = 0.3  # dev: an occluded face 0.38-0.94, the empty place 0.09-0.22
# Covered: mean and spread of the grey levels against the last frame with a face (dev: a
# hand over the lens 0.27-0.45 of the mean, 0.16-0.27 of the spread; a dim room or a slow
# lighting ramp keep their contrast). Without a reference, absolute levels.
DARK_SHARE, FLAT_SHARE = 0.6, 0.35
DARK_LUMA, FLAT_STD = 40.0, 12.0
# A scene change between two samples: this share of the pixels moved by more than
# CHANGE_LEVEL grey levels (dev: a seated person's sway 0-14%, someone else sitting down
# 30%, an exposure jump 40-87%). Not an event: triage shows the model such moments.
CHANGE_LEVEL, CHANGE_SHARE = 24, 0.2

# "unseen": no face, and none seen yet in this recording: the cascade may simply not find
# this person (an odd angle, a test pattern), so nobody is called absent on that alone.
State = Literal["one", "many", "hidden", "absent", "covered", "unseen"]


@dataclass(frozen=True)
class Box:
    """A face, as shares of the frame (x, y: top-left corner)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def centre_offset(self) -> float:
        """How far the face's centre is from the frame's vertical midline (0-0.5)."""
        return abs(self.x + self.w / 2 - 0.5)


@dataclass(frozen=True)
class FaceSample:
    time_s: float
    boxes: tuple[Box, ...]
    state: State
    change: float = 0.0  # share of the pixels that changed since the previous sample


@dataclass(frozen=True)
class FaceConfig:
    """Thresholds for turning samples into findings (seconds; offsets in frame widths)."""

    aside_offset: float = 0.22
    min_absent_s: float = 3.0
    min_covered_s: float = 2.0
    min_multiple_s: float = 2.0
    min_aside_s: float = 2.0
    merge_gap_s: float = 1.0  # one odd sample does not split a stretch
    # A second face the cascade finds on and off (turned, blurred) is one person still there.
    multiple_gap_s: float = 4.0


@dataclass(frozen=True)
class FaceFindings:
    absent: tuple[Interval, ...] = ()
    multiple: tuple[Interval, ...] = ()
    aside: tuple[Interval, ...] = ()
    covered: tuple[Interval, ...] = ()
    changed: tuple[Interval, ...] = ()  # scene changes (not events; see `triage`)
    unseen: tuple[Interval, ...] = ()  # no face found yet (not an event; see `triage`)
    samples: int = 0

    def to_dict(self) -> dict[str, object]:
        def spans(items: tuple[Interval, ...]) -> list[list[float]]:
            return [[round(i.start_s, 2), round(i.end_s, 2)] for i in items]

        return {
            "absent": spans(self.absent),
            "multiple": spans(self.multiple),
            "aside": spans(self.aside),
            "covered": spans(self.covered),
            "changed": spans(self.changed),
            "unseen": spans(self.unseen),
            "samples": self.samples,
        }


class FaceDetector:
    """The cascade, and the memory of how the person looked when the face was last seen."""

    def __init__(self) -> None:
        import cv2  # the model ships in the wheel: cv2.data.haarcascades

        cv2.setNumThreads(1)  # the container's other core decodes
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's {CASCADE} did not load")
        self._reference: tuple[tuple[int, int, int, int], np.ndarray] | None = None
        self._levels = (DARK_LUMA / DARK_SHARE, FLAT_STD / FLAT_SHARE)  # (mean, std) with a face
        self._previous: np.ndarray | None = None

    def sample(self, frame: np.ndarray, time_s: float) -> FaceSample:
        """One grey frame (uint8, height x width) at `time_s` on the test clock."""
        change = self._change(frame)
        found = self._classify(frame, time_s)
        return FaceSample(found.time_s, found.boxes, found.state, change)

    def _change(self, frame: np.ndarray) -> float:
        previous, self._previous = self._previous, frame.astype(np.int16)
        if previous is None or previous.shape != frame.shape:
            return 0.0
        return float((np.abs(self._previous - previous) > CHANGE_LEVEL).mean())

    def _classify(self, frame: np.ndarray, time_s: float) -> FaceSample:
        height, width = frame.shape
        mean, std = float(frame.mean()), float(frame.std())
        if mean <= DARK_SHARE * self._levels[0] and std <= FLAT_SHARE * self._levels[1]:
            return FaceSample(time_s, (), "covered")
        found = self._cascade.detectMultiScale(
            frame,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBOURS,
            minSize=(round(MIN_FACE * width), round(MIN_FACE * width)),
        )
        boxes = sorted(
            (Box(x / width, y / height, w / width, h / height) for x, y, w, h in found),
            key=lambda b: -b.w * b.h,
        )
        if len(boxes) == 1:
            self._remember(frame, boxes[0])
            self._levels = (mean, std)
            return FaceSample(time_s, tuple(boxes), "one")
        if boxes:
            return FaceSample(time_s, tuple(boxes), "many")
        if self._reference is None:
            return FaceSample(time_s, (), "unseen")
        return FaceSample(time_s, (), "hidden" if self._still_there(frame) else "absent")

    def _remember(self, frame: np.ndarray, box: Box) -> None:
        height, width = frame.shape
        side, up, down = REGION_GROW
        face = box.w * width
        x0 = max(0, round(box.x * width - side * face))
        x1 = min(width, round((box.x + box.w) * width + side * face))
        y0 = max(0, round(box.y * height - up * face))
        y1 = min(height, round((box.y + box.h) * height + down * face))
        self._reference = ((x0, y0, x1, y1), frame[y0:y1, x0:x1].astype(np.float32))

    def _still_there(self, frame: np.ndarray) -> bool:
        if self._reference is None:
            return False
        (x0, y0, x1, y1), then = self._reference
        return normalised_correlation(frame[y0:y1, x0:x1].astype(np.float32), then) >= PRESENT_NCC


def normalised_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-sized patches: 1 same picture (whatever the
    exposure), ~0 unrelated."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / norm if norm > 0 else 0.0


def face_findings(
    samples: Sequence[FaceSample], *, config: FaceConfig | None = None, step_s: float
) -> FaceFindings:
    """Stretches with nobody there, more than one face, or the one face far aside (pure).
    Each sample stands for `step_s` seconds from its time."""
    config = config or FaceConfig()

    def stretches(
        keep: set[str] | None, aside: bool, min_s: float, gap_s: float = config.merge_gap_s
    ) -> tuple[Interval, ...]:
        spans = [
            Interval(s.time_s, s.time_s + step_s)
            for s in samples
            if (keep is not None and s.state in keep)
            or (aside and s.state == "one" and s.boxes[0].centre_offset >= config.aside_offset)
        ]
        merged = iv.merge(spans, gap_s=gap_s)
        return tuple(i for i in merged if i.duration_s >= min_s)

    changed = [Interval(s.time_s, s.time_s + step_s) for s in samples if s.change >= CHANGE_SHARE]
    return FaceFindings(
        changed=tuple(iv.merge(changed)),
        unseen=stretches({"unseen"}, False, 0.0),
        covered=stretches({"covered"}, False, config.min_covered_s),
        absent=stretches({"absent"}, False, config.min_absent_s),
        multiple=stretches({"many"}, False, config.min_multiple_s, config.multiple_gap_s),
        aside=stretches(None, True, config.min_aside_s),
        samples=len(samples),
    )
