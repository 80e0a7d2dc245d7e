"""The container images as they will really run, without Docker (`devtools/image.py`).

A clean virtualenv is built from the hash-pinned lock each Dockerfile installs
(`containers/requirements.txt`) alone, with `--require-hashes` (no dev dependencies, no
Airflow), the sources are laid out exactly as each Dockerfile's `COPY` lines say (parsed
from the Dockerfile, so the two cannot drift) and byte-compiled as its `RUN python -m
compileall` says, and each `ENTRYPOINT` runs end to end against the fake Gemini and moto S3
with the Dockerfile's `ENV`, its non-root `USER` (when the tests run as root), and only the
scratch volume writable.

The virtualenv is cached under `.cache/image-venv/<hash of the lock>/` (gitignored), so only
the first run after a lock change pays for the install (~1 minute). The lock is checked
against its input here too; `tests/test_images_build.py` builds and runs the real images.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from _proctor_fixtures import make_recording, mediarecorder_chunks
from conftest import AWS_TEST_ENV, REPO_ROOT, MotoS3

from devtools import images as builder
from devtools.image import (
    IMAGES,
    Image,
    Runtime,
    laid_out,
    parse_dockerfile,
    requirements_file,
)
from devtools.image import runtime as image_runtime


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return image_runtime(as_image_user=True)


# -- running one image --------------------------------------------------------------------


def snapshot(*trees: Path) -> dict[str, tuple[int, int]]:
    """Every file under `trees` with its size and mtime: a run must change none of them."""
    seen = {}
    for tree in trees:
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                info = path.lstat()
                seen[str(path)] = (info.st_size, info.st_mtime_ns)
    return seen


def run_image(
    image: Image, env: dict[str, str], *, expect_code: int = 0
) -> subprocess.CompletedProcess:
    before = snapshot(image.root, image.venv)
    proc = image.run(env)
    assert proc.returncode == expect_code, proc.stdout[-4000:] + proc.stderr[-4000:]
    # Nothing outside the scratch volume was written (no bytecode, no caches, no temp files).
    assert snapshot(image.root, image.venv) == before
    return proc


def gemini_env(fake: Any, moto: MotoS3) -> dict[str, str]:
    return {
        **AWS_TEST_ENV,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "GEMINI_API_KEY": "image-test-key",
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_MAX_ATTEMPTS": "2",
    }


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_installs_a_hash_pinned_lock_into_a_virtualenv(name: str) -> None:
    dockerfile = parse_dockerfile(IMAGES[name])
    assert requirements_file(dockerfile) in {lock.target for lock in builder.locks()}
    install = dockerfile.pip_install
    assert "--require-hashes" in install, install
    # Nothing gets pip-installed by name beside the lock.
    assert install[-2] == "-r" and [w for w in install if "==" in w] == [], install
    assert dockerfile.venv == "/opt/venv"
    assert dockerfile.entrypoint == ["/opt/venv/bin/python", "-m", name]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_base_image_is_pinned_by_digest_and_overridable(name: str) -> None:
    dockerfile = parse_dockerfile(IMAGES[name])
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", dockerfile.base)
    assert dockerfile.args["BASE_IMAGE"] == dockerfile.base  # FROM ${BASE_IMAGE}
    assert dockerfile.python_version == "3.11"


def _shared_part(path: Path) -> list[str]:
    """The instructions above the first COPY of sources (comments dropped), with the lock an
    image installs named alike: an image with its own lock (the proctor's detectors) shares
    the apt layer and the same install step, on its own file."""
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    text = re.sub(r"containers/(\w+/)?requirements\.txt", "<the image's lock>", text)
    head = text.split("COPY containers/analysis_engine", 1)[0]
    return [" ".join(chunk.split()) for chunk in head.split("\n\n") if chunk.strip()]


def test_both_dockerfiles_share_every_layer_above_their_sources() -> None:
    """The second build reuses the first's apt layer (and a registry stores it once); the pip
    layer is the same step over each image's lock."""
    first, second = (_shared_part(IMAGES[name]) for name in sorted(IMAGES))
    assert first == second
    assert any("apt-get install" in step for step in first)
    assert any("pip install" in step for step in first)


def _lock_entries(text: str) -> dict[str, tuple[str, list[str], list[str]]]:
    """name -> (version, hashes, via) of a `uv pip compile --generate-hashes` lock."""
    entries: dict[str, tuple[str, list[str], list[str]]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, _, version = line.split(" ")[0].partition("==")
            assert version, f"not pinned exactly: {line}"
            current = _normalised(name)
            entries[current] = (version, [], [])
        elif current and line.strip().startswith("--hash=sha256:"):
            entries[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif current and line.strip().startswith("#"):
            words = line.strip("# ").removeprefix("via").strip()
            entries[current][2].append(words)
    return entries


@pytest.mark.parametrize("lock", builder.locks(), ids=lambda lock: str(lock.source.parent.name))
def test_lock_pins_every_dependency_with_hashes_and_holds_its_input(lock: Any) -> None:
    entries = _lock_entries(lock.target.read_text())
    direct = requirement_pins(lock.source)
    assert len(entries) > len(direct)  # the transitive dependencies are in it
    for name, (_, hashes, _) in entries.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    source = f"-r {lock.source.relative_to(REPO_ROOT)}"
    from_input = {name for name, (_, _, via) in entries.items() if source in via}
    assert from_input == set(direct), "the lock's direct dependencies are the input's"
    assert {name: entries[name][0] for name in direct} == direct


def test_locks_are_what_their_inputs_give() -> None:
    """`make lock` again (PyPI as of each input's exclude-newer date) changes nothing."""
    assert builder.stale_locks() == []


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_sources_are_byte_compiled_at_build_time(name: str, runtime: Runtime) -> None:
    """The root filesystem is read-only and PYTHONDONTWRITEBYTECODE is set: a source without
    its bytecode in the image would be compiled again at every container start."""
    dockerfile = parse_dockerfile(IMAGES[name])
    assert dockerfile.env.get("PYTHONDONTWRITEBYTECODE") == "1"
    tag = "cpython-" + dockerfile.python_version.replace(".", "")
    with laid_out(name, runtime) as image:
        trees = [image.host_path(dest) for _, dest in dockerfile.copies]
        sources = [path for tree in trees if tree.is_dir() for path in tree.rglob("*.py")]
        missing = [
            str(src.relative_to(image.root))
            for src in sources
            if not (src.parent / "__pycache__" / f"{src.stem}.{tag}.pyc").is_file()
        ]
    assert len(sources) > 20
    assert missing == []


# Pinned although no container module imports it, and why.
NOT_IMPORTED_ON_PURPOSE = {"aiohttp": "google-genai's async transport (see requirements.in)"}


SHARED_INPUT = REPO_ROOT / "containers" / "requirements.in"


def requirement_pins(source: Path = SHARED_INPUT) -> dict[str, str]:
    """The direct dependencies a requirements.in pins (`-r` lines are other inputs)."""
    pins = {}
    for line in source.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"{source.name}: {line!r} is not pinned exactly"
            pins[_normalised(name)] = version.strip()
    return pins


def imported_distributions() -> dict[str, set[str]]:
    """Third-party distribution -> the container files importing it (resolved in the dev
    venv, whose versions the pins equal)."""
    found: dict[str, set[str]] = {}
    for source in sorted((REPO_ROOT / "containers").rglob("*.py")):
        for module in _imports(source.read_text()):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in LOCAL_PACKAGES or top == "__future__":
                continue
            found.setdefault(_distribution_of(module), set()).add(
                str(source.relative_to(REPO_ROOT))
            )
    return found


LOCAL_PACKAGES = {"analysis_engine", "task_analyzer", "proctor_video"}


def _imports(text: str) -> Iterator[str]:
    """Dotted names imported (`from google import genai` imports google.genai: the name is
    only used to find its distribution, so a trailing class name does no harm)."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@functools.cache
def _distribution_of(module: str) -> str:
    """Found from the installed distributions' file lists, without importing anything."""
    parts = module.split(".")
    candidates = sorted(set(_packages_distributions().get(parts[0], [])))
    if len(candidates) == 1:
        return _normalised(candidates[0])
    for depth in range(len(parts), 1, -1):  # a namespace package (google.*): who owns it
        package = "/".join(parts[:depth])
        for name in candidates:
            files = importlib.metadata.distribution(name).files or []
            if any(str(f).startswith(f"{package}/") or str(f) == f"{package}.py" for f in files):
                return _normalised(name)
    raise AssertionError(f"no installed distribution provides {module}")


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_requirements_are_exactly_what_the_containers_import() -> None:
    """Fast twin of the end-to-end runs: a new import without its pin (or a pin nothing
    imports, like ffmpeg-python and tenacity once were) fails here, naming the files. The
    pins of every input count (the shared one and any image's own)."""
    pins = {k: v for lock in builder.locks() for k, v in requirement_pins(lock.source).items()}
    imported = imported_distributions()
    missing = {dist: sorted(files) for dist, files in imported.items() if dist not in pins}
    assert not missing, f"add these to containers/requirements.in (then make lock): {missing}"
    unused = set(pins) - set(imported) - set(NOT_IMPORTED_ON_PURPOSE)
    assert not unused, f"pinned but never imported by the containers: {sorted(unused)}"
    for dist, version in pins.items():  # the image runs what the tests ran
        assert importlib.metadata.version(dist) == version, f"{dist}: dev venv differs"


@pytest.mark.slow  # the first run builds the virtualenv (~1 min)
@pytest.mark.timeout(600)
def test_task_analyzer_image_end_to_end(
    runtime: Runtime, moto_s3: MotoS3, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("image-task.mp4", duration=24, codec="h264")
    moto_s3.put("s3://recordings/img-task/screen.mp4", clip.read_bytes())
    with laid_out("task_analyzer", runtime) as image:
        proc = run_image(image, {
            **gemini_env(fake_gemini, moto_s3),
            "ANALYSIS_ID": "img-task",
            "INPUT_URI": "s3://recordings/img-task/screen.mp4",
            "OUTPUT_URI": "s3://results/img-task/",
            "SEGMENT_SECONDS": "10",
            "ANALYSIS_CONTEXT": json.dumps({"task_brief": "Write a parser"}),
        })  # fmt: skip
        leftovers = list(image.scratch.iterdir())
    result = moto_s3.get_json("s3://results/img-task/result.json")
    assert result["status"] == "complete", result["error"]
    assert result["coverage"]["segments_analysed"] >= 2
    assert result["report"] and result["usage"]["calls"] >= 3
    assert "finished complete" in proc.stdout.strip().splitlines()[-1]
    assert "Gemini transport: aiohttp" in proc.stdout  # the pinned one, not a fallback
    # The report templates (package data, not .py) made it into the image too.
    assert "img-task/report.html" in moto_s3.keys("s3://results/img-task/")
    assert fake_gemini.stats["live_files"] == 0
    assert leftovers == []  # the run's temporary directory was removed


@pytest.mark.slow  # the first run builds the virtualenv (~1 min)
@pytest.mark.timeout(600)
def test_proctor_video_image_end_to_end(
    runtime: Runtime, moto_s3: MotoS3, fake_gemini: Any, tmp_path: Path
) -> None:
    chunks = mediarecorder_chunks(make_recording(tmp_path / "webcam.webm", 12))
    for i, chunk in enumerate(chunks):
        moto_s3.put(f"s3://recordings/img-proctor/{i}.webm", chunk)
    with laid_out("proctor_video", runtime) as image:
        proc = run_image(image, {
            **gemini_env(fake_gemini, moto_s3),
            "ANALYSIS_ID": "img-proctor",
            "INPUT_URI": "s3://recordings/img-proctor/",
            "OUTPUT_URI": "s3://results/img-proctor/",
            "SEGMENT_SECONDS": "10",
        })  # fmt: skip
    result = moto_s3.get_json("s3://results/img-proctor/result.json")
    assert result["status"] == "complete", result["error"]
    assert "finished complete" in proc.stdout.strip().splitlines()[-1]
    keys = moto_s3.keys("s3://results/img-proctor/")
    assert "img-proctor/video.webm" in keys
    assert fake_gemini.stats["live_files"] == 0
