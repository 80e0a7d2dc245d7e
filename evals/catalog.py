"""The two generated sets, written down as code: `dev` (detectors may be tuned on it) and
`heldout` (never used for tuning; other photographs, voices, music, mains frequency,
resolutions, fonts, near-threshold values and seeds). `python -m evals.catalog` writes
`sets/dev.json` and `sets/heldout.json`; a test checks that the committed files are what
this module builds, so a label is never edited in one place only.

Truth is derived from the same description that drives the generator, by one policy:

- picture: `absent` → face_absent, `second_person` → multiple_faces, `different_person` →
  different_person, `looking_away` → looking_away, `phone` → phone_or_device, `hand` and
  `black` → camera_covered (≥ 2 s), `frozen` → camera_frozen (≥ 5 s); `moved`, `scaled`,
  `occluded` and lighting are not events (they are what detectors must not fire on);
- sound: speech ≥ 4 s (merged across pauses < 2 s) → audio_activity; speech by someone other
  than the candidate → other_voice as well; keyboard, music, fan, hum and tones are not
  events at any loudness;
- chunks never uploaded → recording_gap, and no other event inside the gap;
- model-type events are labelled from 2 s;
- integrity: the product's rules (`proctor_video.events.score_integrity`) applied to the
  true events, i.e. what the pipeline should conclude if it saw exactly what happened.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.labels import FORMAT, VERSION
from proctor_video.events import Event, score_integrity

HERE = Path(__file__).resolve().parent
CHUNK_S = 3.0
PICTURE_EVENTS = {
    "absent": "face_absent",
    "second_person": "multiple_faces",
    "different_person": "different_person",
    "looking_away": "looking_away",
    "phone": "phone_or_device",
    "hand": "camera_covered",
    "black": "camera_covered",
    "frozen": "camera_frozen",
}
SIGNAL_TYPES = ("camera_covered", "camera_frozen", "recording_gap", "audio_activity")
MIN_S = {"camera_covered": 2.0, "camera_frozen": 5.0, "audio_activity": 4.0}
MODEL_MIN_S = 2.0
SPEECH_MERGE_S = 2.0


@dataclass(frozen=True)
class Sources:
    """What differs between the sets: where faces, voices and sounds come from."""

    split: str
    seed: int
    candidate: str
    others: tuple[str, ...]
    impostor: str
    voices: tuple[Mapping[str, Any], ...]  # candidate first
    music: Mapping[str, Any]
    hum_hz: int
    size: str
    big_size: str
    fps: int
    font: str
    noise: float


DEV = Sources(
    split="dev",
    seed=1000,
    candidate="hopper",
    others=("lfw:3", "lfw:17", "lfw:29", "lfw:41"),
    impostor="lfw:8",
    voices=(
        {"engine": "espeak-ng", "voice": "en-gb+m3", "rate": 165, "pitch": 45},
        {"engine": "flite", "voice": "kal", "rate": 160},
        {"engine": "espeak-ng", "voice": "en-us+f2", "rate": 150, "pitch": 60},
        {"engine": "flite", "voice": "awb", "rate": 170},
    ),
    music={"tempo": 100, "key": 0},
    hum_hz=50,
    size="320x240",
    big_size="480x360",
    fps=10,
    font="mono",
    noise=0.02,
)
HELDOUT = Sources(
    split="heldout",
    seed=5000,
    candidate="astronaut",
    others=("lfw:55", "lfw:70", "lfw:88", "camera"),
    impostor="lfw:77",
    voices=(
        {"engine": "flite", "voice": "slt", "rate": 150},
        {"engine": "espeak-ng", "voice": "en-gb-scotland+f4", "rate": 155, "pitch": 55},
        {"engine": "flite", "voice": "rms", "rate": 175},
        {"engine": "espeak-ng", "voice": "en-029+Andy", "rate": 140, "pitch": 35},
    ),
    music={"tempo": 128, "key": 5},
    hum_hz=60,
    size="320x240",
    big_size="640x360",
    fps=12,
    font="mono-bold",
    noise=0.03,
)


# ----------------------------------------------------------------------------- truth
def _merge(spans: Iterable[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _minus(span: tuple[float, float], holes: Sequence[tuple[float, float]]) -> list[tuple]:
    pieces = [span]
    for ha, hb in holes:
        pieces = [p for a, b in pieces for p in ((a, min(b, ha)), (max(a, hb), b)) if p[1] > p[0]]
    return pieces


def lost_gaps(lost: Iterable[int]) -> list[tuple[float, float]]:
    return _merge(((i * CHUNK_S, (i + 1) * CHUNK_S) for i in lost), 0.0)


def truth_events(
    picture: Sequence[Mapping[str, Any]],
    sound: Sequence[Mapping[str, Any]],
    *,
    duration_s: float,
    gaps: Sequence[tuple[float, float]] = (),
    offset_s: float = 0.0,
) -> list[dict[str, Any]]:
    """The labelled events of one stretch of recording (see the module docstring)."""
    found: dict[str, list[tuple[float, float]]] = {}
    for e in picture:
        kind = PICTURE_EVENTS.get(str(e["kind"]))
        if kind:
            span = (offset_s + float(e["start_s"]), offset_s + float(e["end_s"]))
            found.setdefault(kind, []).append(span)
    speech = [s for s in sound if s["kind"] == "speech"]
    for s in speech:
        a = offset_s + float(s.get("start_s", 0.0))
        b = offset_s + float(s.get("end_s", duration_s))
        found.setdefault("audio_activity", []).append((a, b))
        if s.get("who", "candidate") != "candidate":
            found.setdefault("other_voice", []).append((a, b))
    out = []
    for kind, spans in found.items():
        merge_gap = SPEECH_MERGE_S if kind == "audio_activity" else 0.5
        for span in _merge(spans, merge_gap):
            for a, b in _minus(span, gaps):
                if b - a >= MIN_S.get(kind, MODEL_MIN_S):
                    out.append({"type": kind, "start_s": round(a, 2), "end_s": round(b, 2)})
    out += [{"type": "recording_gap", "start_s": a, "end_s": b} for a, b in gaps]
    return sorted(out, key=lambda e: (e["start_s"], e["type"]))


def integrity(events: Sequence[Mapping[str, Any]], duration_s: float) -> str:
    """The product's rules on the true events (what the pipeline should conclude)."""
    as_events = [
        Event(
            e["type"], e["start_s"], e["end_s"], 0.9,
            "signal" if e["type"] in SIGNAL_TYPES else "model",
        )
        for e in events
    ]  # fmt: skip
    return score_integrity(as_events, duration_s).level


# ----------------------------------------------------------------------------- builders
def _slices(recipe: Mapping[str, Any], duration_s: float, sound: Sequence[Mapping[str, Any]],
            picture: Mapping[str, Any], recorder: str) -> dict[str, str]:  # fmt: skip
    codec = str(recipe.get("codec") or recipe.get("mime", "vp8"))
    if "codecs=" in codec:
        codec = codec.split("codecs=")[1].split(",")[0]
    codec = {"h264_mkv": "h264", "safari_mp4": "h264-mp4"}.get(codec, codec)
    if recipe.get("keyframe_s", 3) is None or recorder == "chromium":
        codec += "-sparse-keyframes"
    length = "short" if duration_s < 120 else ("30min" if duration_s < 2700 else "60min")
    lights = {str(x["kind"]) for x in picture.get("lighting", [])}
    lighting = "ramp" if "ramp" in lights else ("exposure-jump" if "jump" in lights else "")
    if not lighting:
        lighting = "dim" if float(picture.get("gain", 1.0)) < 0.6 else "steady"
    kinds = [str(s["kind"]) for s in sound if s["kind"] not in ("room", "silence")]
    speakers = {s.get("who", "candidate") for s in sound if s["kind"] == "speech"}
    if len(speakers) > 1:
        label = "two-speakers"
    elif kinds.count("speech") and len(set(kinds)) > 1:
        label = "speech+noise"
    elif kinds:
        label = "+".join(sorted(set(kinds)))
    else:
        label = "quiet"
    return {"codec": codec, "length": length, "lighting": lighting, "sound": label,
            "recorder": recorder}  # fmt: skip


class Builder:
    """Cases of one set, each a recipe and its truth from the same description."""

    def __init__(self, src: Sources) -> None:
        self.src = src
        self.cases: list[dict[str, Any]] = []

    def _seed(self) -> int:
        return self.src.seed + len(self.cases)

    def voice(self, n: int, **extra: Any) -> dict[str, Any]:
        return {"kind": "speech", **self.src.voices[n % len(self.src.voices)], **extra}

    def picture(self, events: Sequence[Mapping[str, Any]] = (), **extra: Any) -> dict[str, Any]:
        return {"size": self.src.size, "fps": self.src.fps, "candidate": self.src.candidate,
                "noise": self.src.noise, "events": list(events), **extra}  # fmt: skip

    def webcam(
        self,
        case_id: str,
        *,
        duration_s: float,
        events: Sequence[Mapping[str, Any]] = (),
        sound: Sequence[Mapping[str, Any]] = (),
        codec: str = "vp8",
        lost: Sequence[int] = (),
        tags: Sequence[str] = (),
        picture: Mapping[str, Any] | None = None,
        ci: bool = False,
        **recipe_extra: Any,
    ) -> None:
        pic = dict(picture) if picture is not None else self.picture(events)
        layers = [{"kind": "room"}, *sound]
        recipe = {"generator": "scene", "duration_s": duration_s, "codec": codec,
                  "seed": self._seed(), "picture": pic, "sound": layers,
                  **({"lost": list(lost)} if lost else {}), **recipe_extra}  # fmt: skip
        gaps = lost_gaps(lost)
        events_true = truth_events(pic["events"], layers, duration_s=duration_s, gaps=gaps)
        stitch = {"runs": 1, "duration_s": duration_s, "gaps": [list(g) for g in gaps]}
        self._add(case_id, recipe, events_true, duration_s, stitch, pic, layers, "synthetic",
                  tags, ci)  # fmt: skip

    def long(
        self,
        case_id: str,
        *,
        total_s: float,
        inserts: Sequence[Mapping[str, Any]],
        codec: str = "vp8",
        tags: Sequence[str] = (),
    ) -> None:
        """A test-length recording: a quiet, typing candidate with a few inserted events."""
        pic = self.picture()
        layers = [{"kind": "room"}, {"kind": "keyboard", "rate": 4}]
        recipe = {"generator": "scene", "duration_s": 60, "codec": codec, "seed": self._seed(),
                  "picture": pic, "sound": layers,
                  "long": {"base_s": 60, "total_s": total_s, "inserts": list(inserts)}}  # fmt: skip
        events_true: list[dict[str, Any]] = []
        for ins in inserts:
            events_true += truth_events(
                ins.get("picture", {}).get("events", []),
                ins.get("sound", []),
                duration_s=float(ins["duration_s"]),
                offset_s=float(ins["at_s"]),
            )
        stitch = {"runs": 1, "duration_s": total_s, "gaps": []}
        self._add(case_id, recipe, events_true, total_s, stitch, pic, layers, "synthetic",
                  tags, False)  # fmt: skip

    def restarts(
        self,
        case_id: str,
        *,
        sessions: Sequence[Mapping[str, Any]],
        lost: Sequence[int] = (),
        codec: str = "vp8",
        tags: Sequence[str] = (),
        **recipe_extra: Any,
    ) -> None:
        """A recorder restarted (each session a new header): clean picture, the candidate
        typing; truth is on the stitch (runs, pauses, lost chunks)."""
        pic = self.picture()
        layers = [{"kind": "room"}, {"kind": "keyboard", "rate": 3}]
        recipe = {"generator": "scene", "codec": codec, "seed": self._seed(), "picture": pic,
                  "sound": layers, "sessions": list(sessions),
                  **({"lost": list(lost)} if lost else {}), **recipe_extra}  # fmt: skip
        clock, index, gaps = 0.0, 0, []
        for session in sessions:
            clock_start = clock + float(session.get("stopped_s", 0))
            if session.get("stopped_s"):
                gaps.append((clock, clock_start))
            n = round(float(session["duration_s"]) / CHUNK_S)
            for i in range(n):
                if index + i in set(lost):
                    gaps.append((clock_start + i * CHUNK_S, clock_start + (i + 1) * CHUNK_S))
            index += n
            clock = clock_start + float(session["duration_s"])
        gaps = _merge(gaps, 0.0)
        events_true = truth_events([], [], duration_s=clock, gaps=gaps)
        stitch = {"runs": len(sessions), "duration_s": clock, "gaps": [list(g) for g in gaps]}
        self._add(case_id, recipe, events_true, clock, stitch, pic, layers, "synthetic", tags,
                  False)  # fmt: skip

    def chromium(
        self,
        case_id: str,
        *,
        segments: Sequence[Mapping[str, float]],
        events: Sequence[Mapping[str, Any]] = (),
        sound: Sequence[Mapping[str, Any]] = (),
        mime: str = "video/webm;codecs=vp8,opus",
        lost: Sequence[int] = (),
        tags: Sequence[str] = (),
    ) -> None:
        """Recorded by headless Chromium in real time: keep `segments` short."""
        pic = self.picture(events, size="320x240", fps=15)
        layers = [{"kind": "room"}, *sound]
        recipe = {"generator": "chromium", "mime": mime, "seed": self._seed(), "picture": pic,
                  "sound": layers, "segments": list(segments),
                  **({"lost": list(lost)} if lost else {})}  # fmt: skip
        clock, index, gaps, runs = 0.0, 0, [], 0
        for seg in segments:
            if seg.get("pause_s"):
                gaps.append((clock, clock + float(seg["pause_s"])))
                clock += float(seg["pause_s"])
                continue
            runs += 1
            n = round(float(seg["record_s"]) / CHUNK_S)
            for i in range(n):
                if index + i in set(lost):
                    gaps.append((clock + i * CHUNK_S, clock + (i + 1) * CHUNK_S))
            index += n
            clock += float(seg["record_s"])
        gaps = _merge(gaps, 0.0)
        events_true = truth_events(pic["events"], layers, duration_s=clock, gaps=gaps)
        stitch = {"runs": runs, "duration_s": clock, "gaps": [list(g) for g in gaps]}
        self._add(case_id, recipe, events_true, clock, stitch, pic, layers, "chromium", tags,
                  False)  # fmt: skip

    def screen(
        self,
        case_id: str,
        *,
        duration_s: float,
        activities: Sequence[Mapping[str, Any]],
        idle: Sequence[tuple[float, float]],
        active: Sequence[tuple[float, float]],
        theme: str = "dark",
        sound: Sequence[Mapping[str, Any]] = (),
        gop_s: float | None = 2,
        tags: Sequence[str] = (),
        rubric: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        recipe = {"generator": "screen", "fps": 5, "duration_s": duration_s, "theme": theme,
                  "font": self.src.font, "gop_s": gop_s, "seed": self._seed(),
                  "activities": list(activities),
                  **({"sound": list(sound)} if sound else {})}  # fmt: skip
        kinds = sorted({str(s["kind"]) for s in sound}) or ["silent"]
        slices = {"codec": "h264" + ("-sparse-keyframes" if gop_s is None else ""),
                  "length": "short", "lighting": f"{theme}-theme",
                  "sound": "+".join(kinds), "recorder": "synthetic"}  # fmt: skip
        truth: dict[str, Any] = {"idle": [list(s) for s in idle],
                                 "active": [list(s) for s in active]}  # fmt: skip
        if rubric:
            truth["rubric"] = {k: list(v) for k, v in rubric.items()}
        self.cases.append({"id": case_id, "kind": "task_analysis", "source": recipe,
                           "slices": slices, "tags": list(tags), "truth": truth})  # fmt: skip

    def _add(self, case_id: str, recipe: Mapping[str, Any], events: list[dict[str, Any]],
             duration_s: float, stitch: Mapping[str, Any], picture: Mapping[str, Any],
             sound: Sequence[Mapping[str, Any]], recorder: str, tags: Sequence[str],
             ci: bool) -> None:  # fmt: skip
        case: dict[str, Any] = {
            "id": case_id,
            "kind": "proctor_video",
            "source": dict(recipe),
            "slices": _slices(recipe, duration_s, sound, picture, recorder),
            "tags": list(tags),
            "truth": {
                "events": events,
                "integrity": integrity(events, duration_s),
                "stitch": dict(stitch),
            },
        }
        if ci:
            case["ci"] = True
        self.cases.append(case)


def _ev(kind: str, a: float, b: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "start_s": a, "end_s": b, **extra}


# ----------------------------------------------------------------------------- the sets
def _common(b: Builder, *, heavy: bool) -> None:
    """Conditions both sets cover (each with its own sources and values)."""
    s, o = b.src, b.src.others
    ho = s.split == "heldout"
    p = "h" if ho else "d"
    # Faces: present, moved, scaled, occluded, absent, duplicated, replaced, turned away.
    b.webcam(f"{p}-face-clean", duration_s=30, sound=[{"kind": "keyboard", "rate": 5}])
    b.webcam(f"{p}-face-moved-scaled", duration_s=36,
             events=[_ev("moved", 5, 14, dx=-0.15, dy=0.05), _ev("scaled", 18, 28, height=1.1),
                     _ev("scaled", 28, 34, height=0.6)])  # fmt: skip
    b.webcam(
        f"{p}-face-occluded",
        duration_s=30,
        events=[_ev("occluded", 6, 16, what="hand"), _ev("occluded", 20, 27, what="mug")],
    )
    b.webcam(f"{p}-face-absent", duration_s=45, events=[_ev("absent", 15, 27 if ho else 25)])
    b.webcam(f"{p}-face-absent-long", duration_s=60, events=[_ev("absent", 10, 50)])
    b.webcam(
        f"{p}-second-person",
        duration_s=40,
        events=[_ev("second_person", 12, 26, photo=o[0], x=0.82, height=0.55)],
    )
    b.webcam(
        f"{p}-second-person-far",
        duration_s=40,
        events=[_ev("second_person", 8, 20, photo=o[1], x=0.15, height=0.3)],
    )
    b.webcam(
        f"{p}-different-person",
        duration_s=45,
        events=[_ev("different_person", 18, 45, photo=s.impostor)],
    )
    b.webcam(f"{p}-looking-away", duration_s=45,
             events=[_ev("looking_away", a, a + 4, direction=d)
                     for a, d in ((6, "left"), (18, "right"), (31, "left"))])  # fmt: skip
    b.webcam(f"{p}-phone", duration_s=36, events=[_ev("phone", 14, 23 if ho else 22)])
    b.webcam(f"{p}-phone-brief", duration_s=30, events=[_ev("phone", 10, 12.5)])
    b.webcam(f"{p}-second-person-whispers", duration_s=40,
             events=[_ev("second_person", 10, 30, photo=o[2], x=0.2, height=0.5)],
             sound=[b.voice(1, start_s=12, end_s=28, who="other", level_db=-30)])  # fmt: skip
    # A hand over the lens: dark, textured, not black; on both sides of the pixel threshold.
    for level in (0.06, 0.10, 0.14, 0.2) if ho else (0.05, 0.09, 0.13, 0.18):
        b.webcam(f"{p}-hand-{round(level * 100):02d}", duration_s=30,
                 events=[_ev("hand", 9, 19, level=level, texture=0.4)],
                 tags=["near-threshold:black-pixel"])  # fmt: skip
    b.webcam(f"{p}-black-short", duration_s=30, events=[_ev("black", 10, 11.4 if ho else 11.6)],
             tags=["near-threshold:black-duration"])  # fmt: skip
    b.webcam(f"{p}-black-just-long-enough", duration_s=30,
             events=[_ev("black", 10, 12.6 if ho else 12.8)],
             tags=["near-threshold:black-duration"])  # fmt: skip
    b.webcam(f"{p}-black-whole", duration_s=30, events=[_ev("black", 0, 30)])
    b.webcam(f"{p}-frozen-short", duration_s=30, events=[_ev("frozen", 8, 12)],
             tags=["near-threshold:freeze-duration"])  # fmt: skip
    b.webcam(f"{p}-frozen-6s", duration_s=30, events=[_ev("frozen", 8, 14 if ho else 14.5)],
             tags=["near-threshold:freeze-duration"])  # fmt: skip
    b.webcam(f"{p}-frozen-long", duration_s=40, events=[_ev("frozen", 10, 26)])
    # Lighting: dim rooms near the black threshold, ramps, auto-exposure jumps.
    for gain in (0.30, 0.45) if ho else (0.28, 0.42):
        b.webcam(f"{p}-dim-room-{round(gain * 100)}", duration_s=30,
                 picture=b.picture(gain=gain), sound=[{"kind": "keyboard", "rate": 4}],
                 tags=["near-threshold:black-pixel"])  # fmt: skip
    b.webcam(f"{p}-light-ramp-down", duration_s=40,
             picture=b.picture(lighting=[{"kind": "ramp", "start_s": 8, "end_s": 30,
                                          "to": 0.3 if ho else 0.35}]))  # fmt: skip
    b.webcam(f"{p}-light-ramp-up", duration_s=36,
             picture=b.picture(gain=0.4, lighting=[{"kind": "ramp", "start_s": 5, "end_s": 25,
                                                    "to": 2.6}]))  # fmt: skip
    b.webcam(f"{p}-exposure-jumps", duration_s=36,
             picture=b.picture(lighting=[{"kind": "jump", "at_s": t, "gain": g, "recover_s": r}
                                         for t, g, r in ((6, 0.2, 1.5), (15, 2.2, 1.0),
                                                         (26, 0.15, 2.5))]))  # fmt: skip
    b.webcam(f"{p}-dim-room-then-hand", duration_s=40,
             picture=b.picture([_ev("hand", 22, 34, level=0.12 if ho else 0.11)],
                               lighting=[{"kind": "ramp", "start_s": 4, "end_s": 18,
                                          "to": 0.5}]))  # fmt: skip
    # Sound: voices and engines, two speakers, near the speech thresholds, noise that is not.
    b.webcam(f"{p}-speech-candidate", duration_s=30, sound=[b.voice(0, start_s=8, end_s=22)])
    b.webcam(
        f"{p}-speech-other", duration_s=30, sound=[b.voice(1, start_s=6, end_s=18, who="other")]
    )
    b.webcam(f"{p}-two-speakers-turns", duration_s=40,
             sound=[b.voice(0, start_s=5, end_s=15), b.voice(2, start_s=16, end_s=27, who="other"),
                    b.voice(0, start_s=28, end_s=34)])  # fmt: skip
    b.webcam(f"{p}-two-speakers-overlap", duration_s=36,
             sound=[b.voice(3, start_s=6, end_s=24),
                    b.voice(1, start_s=12, end_s=22, who="other", level_db=-26)])  # fmt: skip
    b.webcam(f"{p}-speech-short", duration_s=30, sound=[b.voice(2, start_s=10, end_s=13)],
             tags=["near-threshold:speech-duration"])  # fmt: skip
    b.webcam(f"{p}-speech-just-long-enough", duration_s=30,
             sound=[b.voice(3, start_s=10, end_s=14.8 if ho else 15)],
             tags=["near-threshold:speech-duration"])  # fmt: skip
    b.webcam(f"{p}-speech-quiet", duration_s=30,
             sound=[b.voice(1, start_s=8, end_s=20, who="other", level_db=-38 if ho else -36)],
             tags=["near-threshold:sound-level"])  # fmt: skip
    b.webcam(
        f"{p}-keyboard-loud",
        duration_s=30,
        sound=[{"kind": "keyboard", "rate": 8, "level_db": -24}],
    )
    b.webcam(f"{p}-music", duration_s=30, sound=[{"kind": "music", **s.music}])
    b.webcam(f"{p}-music-and-speech", duration_s=36,
             sound=[{"kind": "music", **s.music, "level_db": -32},
                    b.voice(2, start_s=12, end_s=26, who="other")])  # fmt: skip
    b.webcam(f"{p}-fan-loud", duration_s=30, sound=[{"kind": "fan", "level_db": -24}])
    b.webcam(
        f"{p}-mains-hum", duration_s=30, sound=[{"kind": "hum", "freq": s.hum_hz, "level_db": -26}]
    )
    b.webcam(f"{p}-fan-hum-keys-speech", duration_s=40,
             sound=[{"kind": "fan"}, {"kind": "hum", "freq": s.hum_hz},
                    {"kind": "keyboard", "rate": 5}, b.voice(0, start_s=14, end_s=26)])  # fmt: skip
    # Codecs, containers and sparse keyframes, with damage.
    b.webcam(f"{p}-vp9-covered-gap", duration_s=36, codec="vp9",
             events=[_ev("black", 6, 15)], lost=[8])  # fmt: skip
    b.webcam(f"{p}-vp9-big-second-person", duration_s=30, codec="vp9",
             picture=b.picture([_ev("second_person", 8, 20, photo=o[3], x=0.8, height=0.6)],
                               size=s.big_size))  # fmt: skip
    b.webcam(f"{p}-h264-mkv-phone-gap", duration_s=30, codec="h264_mkv",
             events=[_ev("phone", 4, 12)], lost=[6])  # fmt: skip
    b.webcam(f"{p}-safari-mp4-absent-gap", duration_s=30, codec="safari_mp4",
             events=[_ev("absent", 9, 18)], lost=[7])  # fmt: skip
    b.webcam(f"{p}-sparse-keyframes-gap", duration_s=36, keyframe_s=None, lost=[5],
             sound=[b.voice(0, start_s=20, end_s=30)])  # fmt: skip
    b.webcam(f"{p}-sparse-keyframes-vp9-hand", duration_s=30, codec="vp9", keyframe_s=None,
             events=[_ev("hand", 12, 22, level=0.08)])  # fmt: skip
    # Chunk damage: lost chunks, restarts, a stopped recorder, a lost first header.
    b.webcam(f"{p}-gap-6s", duration_s=30, lost=[3, 4])
    b.restarts(f"{p}-restart-with-header", sessions=[{"duration_s": 12}, {"duration_s": 15}])
    b.restarts(
        f"{p}-restart-after-stop",
        sessions=[{"duration_s": 15}, {"duration_s": 12, "stopped_s": 18 if ho else 20}],
    )
    b.restarts(f"{p}-first-header-lost", sessions=[{"duration_s": 12}, {"duration_s": 12}],
               lost=[0])  # fmt: skip
    b.restarts(f"{p}-tagged-names-reupload", sessions=[{"duration_s": 27}], names="tagged",
               reupload=[{"index": 3, "as": 4}])  # fmt: skip
    if not heavy:
        return
    # Real browser chunks (real time: a few short ones).
    b.chromium(f"{p}-chromium-vp8-speech", segments=[{"record_s": 18}],
               sound=[b.voice(0, start_s=4, end_s=14)])  # fmt: skip
    b.chromium(f"{p}-chromium-vp9-covered-lost", mime="video/webm;codecs=vp9,opus",
               segments=[{"record_s": 21}], events=[_ev("black", 9, 17)], lost=[1])  # fmt: skip
    b.chromium(f"{p}-chromium-restart-second-person",
               segments=[{"record_s": 9}, {"pause_s": 6}, {"record_s": 12}],
               events=[_ev("second_person", 16, 25, photo=o[0], x=0.8, height=0.5)])  # fmt: skip


def _screens(b: Builder) -> None:
    ho = b.src.split == "heldout"
    p = "h" if ho else "d"
    keys = {"kind": "keyboard", "rate": 4}
    b.screen(f"{p}-screen-light-typing-idle", duration_s=80, theme="light",
             activities=[{"kind": "typing", "start_s": 0, "end_s": 25, "chars_per_s": 3},
                         {"kind": "idle", "start_s": 25, "end_s": 65},
                         {"kind": "typing", "start_s": 65, "end_s": 80, "chars_per_s": 3}],
             idle=[(27, 63)], active=[(0, 25), (65, 80)],
             sound=[{**keys, "start_s": 0, "end_s": 25}, {**keys, "start_s": 65, "end_s": 80}],
             rubric={"Correctness": (2, 4)})  # fmt: skip
    b.screen(f"{p}-screen-dark-sparse-keyframes", duration_s=75, gop_s=None,
             activities=[{"kind": "typing", "start_s": 0, "end_s": 20, "chars_per_s": 4},
                         {"kind": "idle", "start_s": 20, "end_s": 60},
                         {"kind": "paste", "start_s": 60, "end_s": 61}],
             idle=[(22, 58)], active=[(0, 20)])  # fmt: skip
    b.screen(f"{p}-screen-light-scroll-music", duration_s=60, theme="light",
             activities=[{"kind": "scroll", "start_s": 0, "end_s": 20, "px_per_s": 30},
                         {"kind": "idle", "start_s": 20, "end_s": 60}],
             idle=[(22, 58)], active=[(0, 20)],
             sound=[{"kind": "music", **b.src.music, "level_db": -30}])  # fmt: skip
    b.screen(f"{p}-screen-dark-narration", duration_s=70,
             activities=[{"kind": "typing", "start_s": 0, "end_s": 30, "chars_per_s": 2},
                         {"kind": "idle", "start_s": 30, "end_s": 70}],
             # A still screen while the candidate talks the problem through is not idle
             # (the product skips still *and* silent stretches; it must not skip this one).
             idle=[], active=[(0, 50)],
             sound=[b.voice(0, start_s=30, end_s=50)])  # fmt: skip
    b.screen(f"{p}-screen-light-idle-just-short", duration_s=60, theme="light",
             activities=[{"kind": "typing", "start_s": 0, "end_s": 15, "chars_per_s": 3},
                         {"kind": "idle", "start_s": 15, "end_s": 43 if ho else 44},
                         {"kind": "typing", "start_s": 43 if ho else 44, "end_s": 60,
                          "chars_per_s": 3}],
             idle=[], active=[(0, 15), (44, 60)],
             tags=["near-threshold:idle-duration"])  # fmt: skip
    b.screen(f"{p}-screen-dark-ai-tab-error", duration_s=50,
             activities=[{"kind": "typing", "start_s": 0, "end_s": 15, "chars_per_s": 5},
                         {"kind": "ai_tab", "start_s": 15, "end_s": 30},
                         {"kind": "terminal_error", "start_s": 30, "end_s": 31},
                         {"kind": "typing", "start_s": 31, "end_s": 50, "chars_per_s": 5}],
             idle=[], active=[(0, 50)], sound=[{**keys, "rate": 7}])  # fmt: skip


def _long(b: Builder) -> None:
    ho = b.src.split == "heldout"
    p = "h" if ho else "d"
    o = b.src.others
    # 9 s of black: high in a 30-s clip, not even medium in a long test (shares of the test).
    b.long(f"{p}-long-30min", total_s=1800, inserts=[
        {"at_s": 600, "duration_s": 60, "picture": {"events": [_ev("absent", 12, 48)]}},
        {"at_s": 1500, "duration_s": 30, "picture": {"events": [_ev("black", 9, 18)]}},
    ], tags=["test-length"])  # fmt: skip
    if ho:
        b.long(f"{p}-long-60min", total_s=3600, codec="vp9", inserts=[
            {"at_s": 900, "duration_s": 30, "sound": [
                {"kind": "room"}, {**b.voice(1), "start_s": 5, "end_s": 25, "who": "other"}]},
            {"at_s": 2400, "duration_s": 60,
             "picture": {"events": [_ev("hand", 10, 50, level=0.09)]}},
            {"at_s": 1800, "duration_s": 30, "picture": {"events": [_ev("phone", 9, 21)]}},
            {"at_s": 3000, "duration_s": 30, "picture": {"events": [
                _ev("second_person", 6, 21, photo=o[1], x=0.8, height=0.5)]}},
        ], tags=["test-length"])  # fmt: skip


def build(split: str) -> dict[str, Any]:
    """The labelled set `split` (dev | heldout) as the JSON document it is committed as."""
    if split == "dev":
        b = Builder(DEV)
        legacy = json.loads((HERE / "sets" / "generated.json").read_text())["cases"]
        for case in legacy:  # the harness's first (calibration) cases stay in dev
            case = {**case, "id": "d-v1-" + case["id"]}
            b.cases.append(case)
        _common(b, heavy=True)
        _screens(b)
        _long(b)
        description = ("Development set: detectors may be tuned on it. The v1 calibration "
                       "cases (test pattern) plus rendered scenes.")  # fmt: skip
    elif split == "heldout":
        b = Builder(HELDOUT)
        _common(b, heavy=True)
        _screens(b)
        _long(b)
        description = ("Held-out test set: never used for tuning. Other photographs, voices, "
                       "music, mains frequency, resolutions, fonts, values and seeds.")  # fmt: skip
    else:
        raise ValueError(f"split must be dev or heldout, got {split!r}")
    return {"format": FORMAT, "version": VERSION, "name": split, "split": split,
            "description": description, "cases": b.cases}  # fmt: skip


def write(split: str) -> Path:
    path = HERE / "sets" / f"{split}.json"
    path.write_text(json.dumps(build(split), indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    for split in argv or sys.argv[1:] or ["dev", "heldout"]:
        print(write(split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
