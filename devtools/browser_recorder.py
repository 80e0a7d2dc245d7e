"""Real MediaRecorder chunks from headless Chromium (tests, eval sets).

Chromium records its fake camera and microphone (or a Y4M/MJPEG video and a WAV file given
to it) with `MediaRecorder.start(timeslice)`, exactly as a proctoring page does, and every
`dataavailable` blob becomes one chunk's bytes. These are the real thing, unlike clusters cut
from an ffmpeg file: a chunk starts wherever the timeslice fell (often inside a block), the
header comes once per recorder session, and keyframes follow the browser's encoder.

    sessions = record_chunks([7.0, 5.0])   # two recorder sessions (a restart), 3-s slices
    write_session_chunks(sessions, tmp / "chunks")   # 0.webm, 1.webm, ... numbered across

Recording runs in real time (a 12-s recording takes ~13 s). The Debian `chromium` is used
(Playwright drives it; nothing is downloaded).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
# getUserMedia needs a secure context: a page served as http://localhost (intercepted).
_ORIGIN = "http://localhost/"
_RECORD_JS = """
async ({sessions, timeslice, mime, width, height, fps}) => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width, height, frameRate: fps}, audio: true});
  const encode = async (blob) => {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000)
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  const out = [];
  for (const ms of sessions) {
    const blobs = [];
    const recorder = new MediaRecorder(stream, {mimeType: mime});
    const stopped = new Promise(resolve => recorder.onstop = resolve);
    recorder.ondataavailable = event => blobs.push(event.data);
    recorder.start(timeslice);
    await new Promise(resolve => setTimeout(resolve, ms));
    recorder.stop();
    await stopped;
    out.push(await Promise.all(blobs.map(encode)));
  }
  stream.getTracks().forEach(track => track.stop());
  return out;
}
"""


def record_chunks(
    sessions: Sequence[float],
    *,
    timeslice_ms: int = 3000,
    mime: str = "video/webm;codecs=vp8,opus",
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    video_file: Path | None = None,
    audio_file: Path | None = None,
    chromium: str = CHROMIUM,
) -> list[list[bytes]]:
    """Record one MediaRecorder session per entry of `sessions` (seconds each, one after the
    other on the same camera: a restart between them) and return each session's chunks.
    `video_file` (.y4m or .mjpeg) and `audio_file` (.wav) replace the fake devices' output."""
    from playwright.sync_api import sync_playwright  # dev dependency

    args = list(_ARGS)
    if video_file is not None:
        args.append(f"--use-file-for-fake-video-capture={video_file}")
    if audio_file is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio_file}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page()
            page.route(f"{_ORIGIN}**", lambda route: route.fulfill(body="<!doctype html>"))
            page.goto(_ORIGIN)
            if not page.evaluate("mime => MediaRecorder.isTypeSupported(mime)", mime):
                raise ValueError(f"this Chromium's MediaRecorder cannot record {mime!r}")
            encoded = page.evaluate(
                _RECORD_JS,
                {
                    "sessions": [round(s * 1000) for s in sessions],
                    "timeslice": timeslice_ms,
                    "mime": mime,
                    "width": width,
                    "height": height,
                    "fps": fps,
                },
            )
        finally:
            browser.close()
    return [[base64.b64decode(chunk) for chunk in session] for session in encoded]


def write_session_chunks(
    sessions: Sequence[Sequence[bytes]], directory: Path, *, suffix: str = ".webm"
) -> list[Path]:
    """Write the chunks as an uploader names them, numbered across sessions from 0."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(chunk for session in sessions for chunk in session):
        path = directory / f"{index}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths
