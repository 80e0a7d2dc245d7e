"""One case through one side's product detectors, exactly as the containers run them
(stitcher, proctor signals → events → integrity rules; screen idle detection).

Runs inside a side's process (`evals.side`), so `analysis_engine` and `proctor_video` are
that side's code. Any exception is the case's result (`error`): the gate counts it as a
failure, never as a clean recording.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from evals.config import Config
from evals.labels import Case


def run_signals(case: Case, path: Path, config: Config, workdir: Path) -> dict[str, Any]:
    """The product's detectors on one case; `{"error": ...}` when anything fails."""
    started = time.monotonic()
    try:
        out = _signals(case, path, config, workdir)
    except Exception as exc:  # the product's failure on this case is the result
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    out["wall_s"] = round(time.monotonic() - started, 2)
    return out


def _signals(case: Case, path: Path, config: Config, workdir: Path) -> dict[str, Any]:
    from analysis_engine import media
    from analysis_engine.stitch import stitch_chunks
    from proctor_video.events import SignalConfig, merge_events, score_integrity, signal_events
    from proctor_video.signals import detect_signals

    if not path.exists():
        raise FileNotFoundError(f"{path}: the case's recording does not exist")
    out: dict[str, Any] = {}
    if case.kind == "proctor_video":
        video, report = path, None
        if path.is_dir():
            (workdir / case.id).mkdir(parents=True, exist_ok=True)
            video = workdir / case.id / "video.webm"
            report = stitch_chunks(sorted(path.iterdir()), video)
            video = report.output  # video.mp4 when the codecs only fit MP4
            out["stitch"] = {**report.to_dict(), "container": video.suffix.lstrip(".")}
        info = media.probe(video)
        offset = report.start_s if report else 0.0
        end_s = max(offset + info.duration_s, report.duration_s if report else 0.0)
        signals = detect_signals(video, start_s=offset, end_s=end_s, has_audio=info.has_audio)
        gaps = [(g.interval, {"reason": g.reason}) for g in report.gaps] if report else []
        events = signal_events(
            black=signals.black,
            frozen=signals.frozen,
            speech=signals.speech,
            gaps=gaps,
            # The face detector's findings, on a side whose product has one.
            **({"faces": signals.faces} if getattr(signals, "faces", None) else {}),
            config=SignalConfig(**config.signal),  # type: ignore[arg-type]
        )
        merged = merge_events(events)
        out["events"] = [e.to_dict() for e in merged]
        out["integrity"] = score_integrity(merged, end_s).level
        out["duration_s"] = end_s
        video.unlink(missing_ok=True)  # the stitched copy is only needed for detection
    else:
        info = media.probe(path)
        idle = media.detect_idle(path, info, min_seconds=config.idle_min_seconds)
        out["idle"] = [[i.start_s, i.end_s] for i in idle]
        out["duration_s"] = info.duration_s
    return out
