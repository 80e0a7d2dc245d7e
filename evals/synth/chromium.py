"""Chunks recorded by a real headless Chromium's MediaRecorder (fake camera and microphone).

    {"generator": "chromium", "mime": "video/webm;codecs=vp8,opus",
     "picture": {...}, "sound": [...], "seed": 3,          # what the fake devices play
     "segments": [{"record_s": 12}, {"pause_s": 6}, {"record_s": 9}],   # a stop, a restart
     "lost": [2]}                                          # chunks never uploaded

The picture and sound are rendered (evals.synth.scene / sound) into a Y4M file and a WAV
file that Chromium plays as its camera and microphone (`--use-file-for-fake-*-capture`);
the page records them with `MediaRecorder.start(3000)`, as the product's web client does,
and hands every blob to Python the moment it is delivered. Each chunk file is stamped with
that moment (the upload time a client uploading while recording gives it), so a stopped
recorder's pause is on the chunks. Recording runs in real time: keep these cases short.

Times in labels: the devices start playing when the page opens the camera, a fraction of a
second before the recorder starts, so the test clock is the files' clock within ~0.5 s.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evals.synth import scene, sound

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip

_PAGE = """<!doctype html><meta charset="utf-8"><title>recorder</title><script>
async function record(args) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: args.width, height: args.height, frameRate: args.fps}, audio: true});
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let index = 0;
  const pending = [];
  for (const seg of args.segments) {
    if (seg.pause_s) { await sleep(seg.pause_s * 1000); continue; }
    const rec = new MediaRecorder(stream, {mimeType: args.mime, videoBitsPerSecond: 400000});
    rec.ondataavailable = (e) => {
      const i = index++;
      pending.push(new Promise((resolve) => {
        const reader = new FileReader();
        const data = () => reader.result.slice(reader.result.indexOf("base64,") + 7);
        reader.onload = () => resolve(window.saveChunk(i, data()));
        reader.readAsDataURL(e.data);
      }));
    };
    const stopped = new Promise((r) => { rec.onstop = r; });
    rec.start(3000);
    await sleep(seg.record_s * 1000);
    rec.stop();
    await stopped;
  }
  await Promise.all(pending);
  stream.getTracks().forEach((t) => t.stop());
  return index;
}
</script>"""


def _devices(recipe: Mapping[str, Any], workdir: Path, cache: Path) -> tuple[Path, Path]:
    """The Y4M and WAV files the fake camera and microphone play (longer than the session,
    so they never loop within it)."""
    seconds = sum(float(s.get("record_s", 0)) + float(s.get("pause_s", 0))
                  for s in recipe["segments"]) + 5  # fmt: skip
    seed = int(recipe.get("seed", 1))
    picture = scene.Picture.from_recipe({"seed": seed, **recipe.get("picture", {})})
    y4m, wav = workdir / "camera.y4m", workdir / "microphone.wav"
    layers = recipe.get("sound") or [{"kind": "room"}]
    sound.write_wav(sound.render(layers, seconds, seed=seed, cache=cache), wav)
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{picture.width}x{picture.height}",
            "-r", str(picture.fps), "-i", "pipe:0", "-pix_fmt", "yuv420p", str(y4m)]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in scene.frames(picture, seconds):
        proc.stdin.write(frame)
    proc.stdin.close()
    if proc.wait() != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"ffmpeg (y4m) failed: {err.strip()[-300:]}")
    return y4m, wav


def record_chunks(recipe: Mapping[str, Any], workdir: Path, *, cache: Path) -> Path:
    """Record the recipe's session(s) in Chromium; returns the chunk prefix directory."""
    from playwright.sync_api import sync_playwright

    y4m, wav = _devices(recipe, workdir, cache)
    page_file = workdir / "recorder.html"
    page_file.write_text(_PAGE)
    out = workdir / "chunks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    lost = {int(i) for i in recipe.get("lost", [])}
    received: dict[int, float] = {}

    def save(index: int, data: str) -> None:
        received[index] = time.time()
        if index not in lost:
            path = out / f"{index}.webm"
            path.write_bytes(base64.b64decode(data))
            os.utime(path, (received[index], received[index]))

    picture = scene.Picture.from_recipe(recipe.get("picture", {}))
    args = {
        "mime": str(recipe.get("mime", "video/webm;codecs=vp8,opus")),
        "segments": list(recipe["segments"]),
        "width": picture.width,
        "height": picture.height,
        "fps": picture.fps,
    }
    flags = [*ARGS, f"--use-file-for-fake-video-capture={y4m}",
             f"--use-file-for-fake-audio-capture={wav}"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page()
            page.expose_function("saveChunk", save)
            page.goto(page_file.as_uri())
            supported = page.evaluate("(m) => MediaRecorder.isTypeSupported(m)", args["mime"])
            if not supported:
                raise RuntimeError(f"chromium: MediaRecorder does not support {args['mime']}")
            total = page.evaluate("(a) => record(a)", args)
        finally:
            browser.close()
    if total != len(received):
        raise RuntimeError(f"chromium: {total} chunks delivered, {len(received)} saved")
    y4m.unlink(missing_ok=True)  # large, and not needed once recorded
    return out
