"""Upload times as a wall clock (pure): how long a recorder was stopped before it restarted.

Neither chunk names nor WebM headers carry wall-clock time, and a restarted recorder counts
its timecodes from 0 again, so the media alone cannot tell a camera switch (no pause) from a
candidate who stopped the recording for a minute. The upload times can: MediaRecorder hands
out a blob every `chunk_seconds` and the client uploads it at once, so a chunk's upload time
is (about) the wall-clock end of the media it carries, and a stopped recorder uploads nothing.

They are only trusted when they look like uploads made while recording: every chunk has one,
they advance with the chunk order (a little jitter allowed: S3 stamps whole seconds and
uploads overlap), and they span at least half the media the chunks carry. A bulk copy (all
stamped within seconds) or a re-ordered upload fails this, and the caller falls back to
placing restarts back to back.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

# Upload latency varies and S3's LastModified has whole seconds: a chunk may look uploaded
# this much before the one it follows, and a pause shorter than the threshold is jitter.
UPLOAD_JITTER_S = 2.0
# Uploads spanning less than this fraction of the nominal media time were not made while
# recording (a bulk copy, a migration between buckets).
MIN_SPAN_FRACTION = 0.5


def upload_clock(
    chunks: Sequence[tuple[str, float | None]], chunk_seconds: float
) -> tuple[dict[str, float] | None, str]:
    """`[(name, upload time), …]` in stitch order → ({name: upload time}, "") when the times
    can date a pause, else (None, why not)."""
    missing = [name for name, uploaded in chunks if uploaded is None]
    if missing:
        return None, f"no upload time for {len(missing)} of {len(chunks)} chunks ({missing[0]})"
    times = [(name, float(uploaded)) for name, uploaded in chunks if uploaded is not None]
    for (before, t0), (name, t1) in pairwise(times):
        if t1 < t0 - UPLOAD_JITTER_S:
            return None, (
                f"upload times out of order ({name} was uploaded {t0 - t1:.1f} s before "
                f"{before}, which precedes it)"
            )
    if len(times) >= 2:
        span = max(t for _, t in times) - min(t for _, t in times)
        nominal = (len(times) - 1) * chunk_seconds
        if span < MIN_SPAN_FRACTION * nominal:
            return None, (
                f"all {len(times)} chunks were uploaded within {span:.1f} s although they "
                f"carry ~{nominal:.0f} s of media (a bulk copy, not uploads made while recording)"
            )
    return dict(times), ""


def pause_seconds(
    previous_upload: float | None,
    upload: float | None,
    media_between_s: float,
) -> float:
    """Seconds a recorder was stopped between the chunk uploaded at `previous_upload` (the end
    of the last media before the restart) and the one uploaded at `upload`, given the media
    recorded in between (the new run's media up to that chunk, and lost chunks). Jitter below
    `UPLOAD_JITTER_S` and negative estimates are no pause."""
    if previous_upload is None or upload is None:
        return 0.0
    pause = upload - previous_upload - media_between_s
    return round(pause, 3) if pause >= UPLOAD_JITTER_S else 0.0
