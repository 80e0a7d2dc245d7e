"""Wall time of the suite's real image work: the local Debian base, the wheel index, both
builds, and one end-to-end run of each image (fake Gemini, moto S3), as
tests/test_images_build.py does it.

    .venv/bin/python bench/bench_images.py            # cold: a fresh store, nothing cached
    .venv/bin/python bench/bench_images.py --warm     # the suite's store as it is (cached)
    .venv/bin/python bench/bench_images.py --append   # also append the figures to RESULTS.md

Cold is what CI (a clean clone) pays; warm is a second session on the same machine. The
figures are mostly apt/dpkg and file copying, so a loaded machine shows in them: the load
average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from devtools import images
from devtools.airflow_env import moto_s3
from devtools.fake_gemini import FakeGemini
from devtools.media import make_screenshare

RESULTS = Path(__file__).with_name("RESULTS.md")
T = TypeVar("T")


def timed(phases: dict[str, float], name: str, step: Callable[[], T]) -> T:
    started = time.monotonic()
    value = step()
    phases[name] = time.monotonic() - started
    print(f"  {name}: {phases[name]:.1f} s", flush=True)
    return value


@contextlib.contextmanager
def fresh_cache(cold: bool) -> Iterator[images.Storage]:
    """Cold: the base, the wheels and the layers made again in a temporary store."""
    if not cold:
        yield images.suite_storage()
        return
    saved = images.CACHE
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-", dir=saved))
    images.CACHE = tmp
    try:
        yield images.suite_storage()
    finally:
        images.CACHE = saved
        for leftover in images._run(
            ["buildah", "--root", str(tmp / "buildah" / "overlay"), "containers", "-q"]
        ).stdout.split():
            images._run(["buildah", "--root", str(tmp / "buildah" / "overlay"), "rm", leftover])
        with contextlib.suppress(images.ImageToolError):
            images._run(["buildah", "--root", str(tmp / "buildah" / "overlay"), "rmi", "--all"])
        shutil.rmtree(tmp, ignore_errors=True)


def run_both(storage: images.Storage, built: dict[str, str], phases: dict[str, float]) -> None:
    with moto_s3() as endpoint, FakeGemini() as fake, tempfile.TemporaryDirectory() as tmp:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        for bucket in ("recordings", "results"):
            s3.create_bucket(Bucket=bucket)
        clip = make_screenshare(Path(tmp) / "screen.mp4", duration=24, codec="h264")
        s3.upload_file(str(clip), "recordings", "bench/screen.mp4")
        webcam = make_screenshare(Path(tmp) / "webcam.webm", duration=12, codec="vp8")
        s3.upload_file(str(webcam), "recordings", "bench-webcam/0.webm")
        env: dict[str, Any] = {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
            "GEMINI_API_KEY": "bench", "GEMINI_BASE_URL": fake.base_url, "SEGMENT_SECONDS": "10",
        }  # fmt: skip
        inputs = {"task_analyzer": "s3://recordings/bench/screen.mp4",
                  "proctor_video": "s3://recordings/bench-webcam/"}  # fmt: skip
        for name, image in built.items():
            with images.container(image, storage=storage) as box:
                run = {**env, "ANALYSIS_ID": f"bench-{name}", "INPUT_URI": inputs[name],
                       "OUTPUT_URI": f"s3://results/{name}/"}  # fmt: skip
                proc = timed(phases, f"run {name}", lambda box=box, run=run: box.run(run))
            body = s3.get_object(Bucket="results", Key=f"{name}/result.json")["Body"].read()
            result = json.loads(body)
            if proc.returncode != 0 or result["status"] != "complete":
                status, error = result["status"], result["error"]
                raise SystemExit(f"{name}: exit {proc.returncode}, {status}: {error}")


def measure(*, cold: bool) -> dict[str, float]:
    phases: dict[str, float] = {}
    started = time.monotonic()
    with fresh_cache(cold) as storage:
        base = timed(phases, "base", lambda: images.make_local_base(storage))
        built = {}
        for name in sorted(images.CONTAINERS):
            lock = images._requirements_copied(name)
            timed(phases, f"wheel index {name}", lambda lock=lock: images.wheelhouse(lock))
            options = images.BuildOptions(images.SUITE_TAG, "buildah", base=base, storage=storage)
            step = lambda o=options, n=name: images.build([n], o, quiet=True, local_wheels=True)  # noqa: E731
            built |= timed(phases, f"build {name}", step)
        run_both(storage, built, phases)
    phases["total"] = time.monotonic() - started
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", action="store_true", help="reuse the suite's cached store")
    parser.add_argument("--append", action="store_true", help=f"append to {RESULTS.name}")
    args = parser.parse_args()
    print(f"{'warm' if args.warm else 'cold'} image build + runs (storage driver: "
          f"{images.suite_storage().driver})", flush=True)  # fmt: skip
    phases = measure(cold=not args.warm)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    line = ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
    summary = f"- {'warm' if args.warm else 'cold'}: {line} (load average after: {load})"
    print(summary)
    if args.append:
        with RESULTS.open("a") as out:
            out.write(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
