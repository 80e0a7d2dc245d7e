"""ffmpeg adapter against real ffmpeg on media generated at test time (devtools.media)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import _media_oracles as oracles
import pytest

from analysis_engine import detector_log, media
from analysis_engine import intervals as iv
from analysis_engine.errors import InvalidInputError, MediaError
from analysis_engine.models import Interval, SegmentPlan
from analysis_engine.planning import plan_segments
from devtools import media as gen

Make = Callable[..., Path]


# ------------------------------------------------------------------------------ probe
@pytest.mark.parametrize(
    ("name", "options", "video", "audio"),
    [
        ("vp8.webm", {"codec": "vp8"}, "vp8", "opus"),
        ("vp9.webm", {"codec": "vp9"}, "vp9", "opus"),
        ("h264.mp4", {"codec": "h264"}, "h264", "aac"),
        ("silent.mp4", {"audio": False}, "h264", None),
        ("sparse.mp4", {"gop_seconds": None}, "h264", "aac"),
    ],
)
def test_probe_good_inputs(
    sample_media: Make, name: str, options: dict[str, object], video: str, audio: str | None
) -> None:
    path = sample_media(name, duration=6, **options)
    info = media.probe(path)
    assert info.video_codec == video
    assert info.audio_codec == audio
    assert info.duration_s == pytest.approx(6, abs=0.1)
    assert (info.width, info.height) == (320, 180)
    assert info.fps == pytest.approx(5)
    assert info.size_bytes == path.stat().st_size
    media.validate_duration(info, 4 * 3600)


def test_live_webm_without_duration_is_measured_from_packets(tmp_path: Path) -> None:
    path = gen.make_live_webcam(tmp_path / "cam.webm", duration=6)
    info = media.probe(path)
    assert info.duration_s == pytest.approx(6, abs=0.3)


def test_keyframes_dense_and_sparse(sample_media: Make) -> None:
    dense = media.keyframe_times(sample_media("h264.mp4", duration=6, codec="h264"))
    assert dense == pytest.approx([0, 2, 4], abs=0.05)
    assert media.keyframe_times(sample_media("sparse.mp4", duration=6, gop_seconds=None)) == [0]


def _bad_inputs(tmp: Path, good_mp4: Path, good_webm: Path) -> dict[str, tuple[Path, str]]:
    nofs = tmp / "nofaststart.mp4"
    media.run_ffmpeg([media.FFMPEG, "-y", "-i", str(good_mp4), "-c", "copy", str(nofs)])
    return {
        "zero-byte": (gen.write_zero_byte(tmp / "empty.mp4"), "empty (0 bytes)"),
        "text": (gen.write_text_file(tmp / "notes.mp4"), "not a video"),
        "text-named-txt": (gen.write_text_file(tmp / "notes.txt"), "not a video"),
        "jpeg": (gen.write_jpeg(tmp / "photo.jpg"), "not a video: file is a still image"),
        "truncated-mp4": (
            gen.write_truncated(good_mp4, tmp / "torn.mp4", keep=0.5),
            "truncated or corrupt container",
        ),
        "truncated-mp4-moov-at-end": (
            gen.write_truncated(nofs, tmp / "torn2.mp4", keep=0.5),
            "truncated or corrupt container",
        ),
        "truncated-webm": (
            gen.write_truncated(good_webm, tmp / "torn.webm", keep=0.5),
            "truncated or corrupt container",
        ),
        "audio-only": (gen.write_audio_only(tmp / "voice.m4a"), "no video stream"),
        "audio-only-webm": (gen.write_audio_only(tmp / "voice.webm"), "no video stream"),
        "zero-duration": (gen.write_zero_duration(tmp / "zero.mp4"), "zero or unknown duration"),
        "missing": (tmp / "absent.mp4", "does not exist"),
    }


def test_every_bad_input_is_invalid_input_with_a_reason(sample_media: Make, tmp_path: Path) -> None:
    cases = _bad_inputs(
        tmp_path,
        sample_media("h264.mp4", duration=6, codec="h264"),
        sample_media("vp8.webm", duration=6, codec="vp8"),
    )
    for case, (path, reason) in cases.items():
        with pytest.raises(InvalidInputError) as err:
            media.probe(path, field="recording")
        assert err.value.field == "recording", case
        assert reason in err.value.reason, f"{case}: {err.value.reason}"
        assert "\n" not in str(err.value), f"{case}: reason must be one line"


def test_too_long(sample_media: Make) -> None:
    info = media.probe(sample_media("h264.mp4", duration=6, codec="h264"))
    with pytest.raises(InvalidInputError, match=r"INPUT_URI: recording is 0:00:06 long, over"):
        media.validate_duration(info, 5)


# ---------------------------------------------------------------------------- cutting
def _assert_durations(out: dict[int, Path], plan: SegmentPlan) -> None:
    assert sorted(out) == [s.index for s in plan.to_analyse]
    for seg in plan.to_analyse:
        got = media.probe(out[seg.index], field="segment").duration_s
        assert got == pytest.approx(seg.duration_s, abs=1.0), seg


@pytest.mark.parametrize(("name", "codec", "suffix"), [("h264.mp4", "h264", ".mp4"),
                                                        ("vp8.webm", "vp8", ".webm")])  # fmt: skip
def test_cut_segments_stream_copy(
    sample_media: Make, tmp_path: Path, name: str, codec: str, suffix: str
) -> None:
    path = sample_media(f"cut-{name}", duration=24, codec=codec, gop_seconds=2)
    info = media.probe(path)
    plan = plan_segments(
        duration_s=info.duration_s,
        keyframes=media.keyframe_times(path),
        target_seconds=8,
        idle=[Interval(8, 16)],
        min_idle_seconds=5,
    )
    assert plan.mode == "copy"
    assert len(plan.skipped) == 1
    out = media.cut_segments(path, plan, tmp_path / "segs", info=info)
    _assert_durations(out, plan)
    assert {p.suffix for p in out.values()} == {suffix}
    assert {media.mime_type_for(p) for p in out.values()} == {f"video/{suffix[1:]}"}
    assert len(list((tmp_path / "segs").iterdir())) == len(out), "skipped files removed"


def test_cut_segments_reencode_on_sparse_keyframes(sample_media: Make, tmp_path: Path) -> None:
    path = sample_media("sparse-long.mp4", duration=24, gop_seconds=None)
    info = media.probe(path)
    plan = plan_segments(
        duration_s=info.duration_s,
        keyframes=media.keyframe_times(path),
        target_seconds=8,
        idle=[],
        min_idle_seconds=5,
    )
    assert plan.mode == "reencode"
    out = media.cut_segments(path, plan, tmp_path / "segs", info=info)
    _assert_durations(out, plan)
    first = media.probe(out[0])
    assert first.video_codec == "h264"
    assert first.fps == pytest.approx(media.REENCODE_FPS)
    assert media.mime_type_for(out[0]) == "video/mp4"


def test_cut_segments_nothing_to_analyse(sample_media: Make, tmp_path: Path) -> None:
    path = sample_media("h264.mp4", duration=6, codec="h264")
    plan = plan_segments(
        duration_s=6, keyframes=[0, 2, 4], target_seconds=3, idle=[Interval(0, 6)],
        min_idle_seconds=5,
    )  # fmt: skip
    assert media.cut_segments(path, plan, tmp_path / "segs") == {}


def test_mime_type_for_rejects_unknown() -> None:
    assert media.mime_type_for(Path("a.MP4")) == "video/mp4"
    with pytest.raises(ValueError):
        media.mime_type_for(Path("a.avi"))


# -------------------------------------------------------------------------- detectors
IDLE = (20.0, 80.0)


@pytest.fixture(scope="module")
def idle_minute(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """110 s screenshare whose minute 20..80 is a still screen with silence."""
    dest = tmp_path_factory.mktemp("idle") / "idle.mp4"
    return gen.make_screenshare(dest, duration=110, fps=2, idle=[IDLE])


def test_detect_idle_finds_the_idle_minute(idle_minute: Path) -> None:
    info = media.probe(idle_minute)
    (found,) = media.detect_idle(idle_minute, info, min_seconds=30)
    assert found.start_s == pytest.approx(IDLE[0], abs=3)
    assert found.end_s == pytest.approx(IDLE[1], abs=3)


def test_detect_idle_without_audio_and_in_webm(tmp_path: Path) -> None:
    path = gen.make_screenshare(
        tmp_path / "quiet.webm", duration=70, fps=2, codec="vp9", audio=False, idle=[(10, 50)]
    )
    info = media.probe(path)
    (found,) = media.detect_idle(path, info, min_seconds=20)
    assert (found.start_s, found.end_s) == pytest.approx((10, 50), abs=3)


def test_still_screen_with_sound_is_not_idle(tmp_path: Path) -> None:
    path = gen.make_screenshare(
        tmp_path / "talk.mp4", duration=60, fps=2, idle=[(10, 50)], silent_idle=False
    )
    info = media.probe(path)
    assert oracles.detect_freeze(path, min_seconds=20) != []
    assert media.detect_idle(path, info, min_seconds=20) == []


def test_active_recording_has_no_idle(sample_media: Make) -> None:
    path = sample_media("active.mp4", duration=40, fps=2)
    assert media.detect_idle(path, media.probe(path), min_seconds=10) == []


def test_detect_freeze_silence_and_speech(idle_minute: Path) -> None:
    (frozen,) = oracles.detect_freeze(idle_minute, min_seconds=10)
    assert (frozen.start_s, frozen.end_s) == pytest.approx(IDLE, abs=1.5)
    (silent,) = oracles.detect_silence(idle_minute, min_seconds=10)
    assert (silent.start_s, silent.end_s) == pytest.approx(IDLE, abs=1.5)
    speech = oracles.detect_speech(idle_minute)
    assert [(round(i.start_s), round(i.end_s)) for i in speech] == [(0, 20), (80, 110)]


def test_detect_black(tmp_path: Path) -> None:
    path = gen.make_live_webcam(tmp_path / "covered.webm", duration=12, black=[(4, 9)])
    (black,) = oracles.detect_black(path, min_seconds=2)
    assert (black.start_s, black.end_s) == pytest.approx((4, 9), abs=0.5)
    assert oracles.detect_black(gen.make_live_webcam(tmp_path / "ok.webm", duration=4)) == []


def test_thumbnail_is_a_jpeg(sample_media: Make, tmp_path: Path) -> None:
    path = sample_media("h264.mp4", duration=6, codec="h264")
    out = media.thumbnail(path, 3.0, tmp_path / "thumbs" / "t.jpg", width=160)
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert media.probe_argv(out)  # builder is pure
    with pytest.raises(MediaError):
        media.thumbnail(path, 600.0, tmp_path / "past-the-end.jpg")


# ------------------------------------------------------------------ runner and pure parts
def test_run_ffmpeg_error_carries_command_and_stderr(tmp_path: Path) -> None:
    argv = [media.FFMPEG, "-i", str(tmp_path / "nope.mp4"), "-f", "null", "-"]
    with pytest.raises(MediaError) as err:
        media.run_ffmpeg(argv)
    assert err.value.command == argv
    assert "No such file" in err.value.stderr_tail
    with pytest.raises(MediaError, match="not installed"):
        media.run_ffmpeg(["/nonexistent/ffmpeg", "-version"])
    with pytest.raises(MediaError, match="timed out"):
        media.run_ffmpeg(
            [media.FFMPEG, "-f", "lavfi", "-i", "testsrc2=d=600", "-f", "null", "-"], timeout=0.3
        )


def test_argv_builders_are_pure_and_cheap() -> None:
    copy = media.segment_argv(Path("in.webm"), [10, 20], Path("o/seg-%05d.webm"), fmt="webm")
    assert copy[copy.index("-c") + 1] == "copy"
    assert copy[copy.index("-segment_times") + 1] == "10.000,20.000"
    enc = media.reencode_segment_argv(Path("in.mp4"), [10], Path("o/s-%05d.mp4"), threads=1)
    assert "ultrafast" in enc
    assert any(a.startswith("fps=2,scale=-2:'min(720,ih)'") for a in enc)
    assert enc[enc.index("-threads") + 1] == "1"
    assert enc[enc.index("-c:a") + 1] == "aac"  # unknown source sound: cheap 16 kHz AAC
    kept = media.reencode_segment_argv(Path("a.mp4"), [], Path("s-%05d.mp4"), audio_codec="aac")
    assert kept[kept.index("-c:a") + 1] == "copy"
    idle = media.change_detect_argv(
        Path("x.mp4"), start=8, end=20, keyframes_only=True, has_audio=False, min_seconds=30
    )
    assert idle[idle.index("-ss") + 1] == "8.000"  # the candidate ...
    assert idle[idle.index("-ss", idle.index("-ss") + 1) + 1] == "2.000"  # ... its reference
    assert "silencedetect" not in " ".join(idle)


def test_parse_start_end_closes_open_freeze_at_range_end() -> None:
    events = [("start", 1.0), ("end", 4.0), ("start", 7.0)]
    assert detector_log.pair(events, offset=10, open_end=30) == [
        Interval(11, 14),
        Interval(17, 30),
    ]


def test_quiet_stretches_from_packet_sizes() -> None:
    packets = [media.Packet(t / 5, 5000, t % 50 == 0) for t in range(0, 100)]  # busy 0..20 s
    packets += [media.Packet(t / 5, 12, t % 50 == 0) for t in range(100, 400)]  # still 20..80
    packets += [media.Packet(t / 5, 5000, False) for t in range(400, 500)]  # busy 80..100
    found = media.quiet_stretches(packets, duration_s=100, min_seconds=30, max_frame_bytes=400)
    assert found == [Interval(19, 81)]


def test_interval_helpers() -> None:
    a = [Interval(0, 10), Interval(20, 30)]
    b = [Interval(5, 25)]
    assert iv.intersect(a, b) == [Interval(5, 10), Interval(20, 25)]
    assert iv.complement(a, 0, 40) == [Interval(10, 20), Interval(30, 40)]
    assert iv.subtract(b, a) == [Interval(10, 20)]
    assert iv.merge([Interval(0, 1), Interval(1.5, 2)], gap_s=0.5) == [Interval(0, 2)]


def test_split_clusters_makes_mediarecorder_style_chunks(tmp_path: Path) -> None:
    src = gen.make_live_webcam(tmp_path / "cam.webm", duration=7, cluster_seconds=3)
    chunks = gen.split_clusters(src, tmp_path / "chunks")
    assert len(chunks) >= 3
    assert chunks[0].read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    assert all(c.read_bytes()[:4] == b"\x1f\x43\xb6\x75" for c in chunks[1:])
    assert b"".join(c.read_bytes() for c in chunks) == src.read_bytes()


def test_copy_plan_with_cuts_off_keyframes_falls_back_to_exact_cuts(
    sample_media: Make, tmp_path: Path
) -> None:
    from analysis_engine.models import Segment

    path = sample_media("h264.mp4", duration=6, codec="h264")  # keyframes at 0, 2, 4
    bounds = [0.0, 2.5, 3.0, 6.0]  # two cuts between the same pair of keyframes
    plan = SegmentPlan(
        segments=tuple(Segment(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))),
        mode="copy",
        duration_s=6.0,
    )
    out = media.cut_segments(path, plan, tmp_path / "segs")
    _assert_durations(out, plan)
    assert all(p.suffix == ".mp4" for p in out.values())


@pytest.mark.parametrize("gop", [None, 5.0], ids=["one-keyframe", "gop-5s"])
def test_detect_idle_with_sparse_or_5s_keyframes(tmp_path: Path, gop: float | None) -> None:
    # One keyframe only -> full decode of the candidates; 5 s gop -> keyframe-only decode.
    path = gen.make_screenshare(
        tmp_path / "rec.mp4", duration=90, fps=2, idle=[(17, 61)], gop_seconds=gop
    )
    (found,) = media.detect_idle(path, media.probe(path), min_seconds=30)
    assert (found.start_s, found.end_s) == pytest.approx((17, 61), abs=3)


def test_keyframe_gap_counts_the_edges() -> None:
    assert media.keyframe_gap([10, 12], 0, 30) == 18
    assert media.keyframe_gap([], 5, 8) == 3


def test_reencode_cuts_off_the_frame_grid_stay_aligned(sample_media: Make, tmp_path: Path) -> None:
    """Regression: the encoder rounds forced keyframes to its 2 fps grid; the muxer must cut
    at those same frames or every later segment shifts by one."""
    from analysis_engine.models import Segment

    path = sample_media("h264.mp4", duration=6, codec="h264")
    bounds = [0.0, 2.037, 4.027, 6.0]
    plan = SegmentPlan(
        segments=tuple(Segment(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))),
        mode="reencode",
        duration_s=6.0,
    )
    out = media.cut_segments(path, plan, tmp_path / "segs")
    durations = [media.probe(out[i]).duration_s for i in range(3)]
    assert durations == pytest.approx([2.0, 2.0, 2.0], abs=0.3)


def test_detect_idle_far_from_a_keyframe_checks_packets_and_sound(tmp_path: Path) -> None:
    """One keyframe, idle late in the file: decoding up to it would cost more than the idle
    itself, so the still picture comes from packet sizes and only silencedetect runs."""
    path = gen.make_screenshare(
        tmp_path / "late.mp4", duration=150, fps=2, idle=[(100, 140)], gop_seconds=None
    )
    (found,) = media.detect_idle(path, media.probe(path), min_seconds=30)
    assert (found.start_s, found.end_s) == pytest.approx((100, 140), abs=3)
    audible = gen.make_screenshare(
        tmp_path / "late-talk.mp4", duration=150, fps=2, idle=[(100, 140)], gop_seconds=None,
        silent_idle=False,
    )  # fmt: skip
    assert media.detect_idle(audible, media.probe(audible), min_seconds=30) == []


def test_slow_silent_typing_in_a_dark_editor_is_not_idle(tmp_path: Path) -> None:
    from evals.generate import screen_recording

    # One character a second (P-frames of ~15 bytes, a whole-frame difference far below any
    # freezedetect noise level), then a minute of nothing but a blinking caret, then typing.
    recipe = {
        "duration_s": 80,
        "fps": 5,
        "activities": [
            {"kind": "typing", "start_s": 0, "end_s": 30, "chars_per_s": 1},
            {"kind": "idle", "start_s": 30, "end_s": 66},
            {"kind": "typing", "start_s": 66, "end_s": 80, "chars_per_s": 1},
        ],
    }
    path = screen_recording(recipe, tmp_path / "editor.mp4")
    (idle,) = media.detect_idle(path, media.probe(path), min_seconds=20)
    assert idle.start_s == pytest.approx(30, abs=2.5)
    assert idle.end_s == pytest.approx(66, abs=2.5)
    assert idle.end_s <= 66.5  # never a typed second skipped


def test_active_from_changes_ignores_a_blinking_caret() -> None:
    times = [float(t) for t in range(0, 40, 2)]
    caret = [(t, 39.0 if k % 2 else 0.0) for k, t in enumerate(times)]  # blinks, adds up to 0
    assert media.active_from_changes(caret[1:], caret, lag_s=6, threshold=80) == []
    # Typing from 20 s on: every 6 s adds ~200 changed pixels.
    typing = [(t, 200.0 if t >= 22 else 0.0) for t in times]
    steps = [(t, 40.0 if t >= 22 else 0.0) for t in times[1:]]
    (active,) = media.active_from_changes(steps, typing, lag_s=6, threshold=80)
    assert active.start_s == 20 and active.end_s == 38


@pytest.mark.parametrize("gop", [2.0, None], ids=["copy", "reencode"])
def test_one_segment_plan_gives_one_file(tmp_path: Path, gop: float | None) -> None:
    """Regression: with no cut the segment muxer fell back to its default 2 s segment_time,
    so a 70 s recording planned as one segment came out as several files (a keyframe every
    2 s when copying; the re-encode's keyframe at 60 s) and the analysis failed."""
    path = gen.make_screenshare(tmp_path / "one.mp4", duration=70, fps=2, gop_seconds=gop)
    info = media.probe(path)
    plan = plan_segments(
        duration_s=info.duration_s,
        keyframes=media.keyframe_times(path),
        target_seconds=120,
        idle=[],
        min_idle_seconds=30,
    )
    assert len(plan.segments) == 1
    out = media.cut_segments(path, plan, tmp_path / "segs", info=info)
    _assert_durations(out, plan)
    assert len(list((tmp_path / "segs").iterdir())) == 1


def test_the_same_cut_is_the_same_bytes(sample_media: Make, tmp_path: Path) -> None:
    """Segments carry no random UIDs: recorded model answers are replayed by request hash,
    and an inline segment's bytes are part of that request."""
    path = sample_media("cut-vp8.webm", duration=24, codec="vp8", gop_seconds=2)
    info = media.probe(path)
    plan = plan_segments(
        duration_s=info.duration_s, keyframes=media.keyframe_times(path), target_seconds=8,
        idle=[], min_idle_seconds=5,
    )  # fmt: skip
    first = media.cut_segments(path, plan, tmp_path / "a", info=info)
    second = media.cut_segments(path, plan, tmp_path / "b", info=info)
    assert [p.read_bytes() for p in first.values()] == [p.read_bytes() for p in second.values()]
