"""The container images as they will really run, without Docker.

A clean virtualenv is built from `containers/requirements.txt` alone (no dev dependencies,
no Airflow), the sources are laid out exactly as each Dockerfile's `COPY` lines say (parsed
from the Dockerfile, so the two cannot drift), and each `ENTRYPOINT` runs end to end against
the fake Gemini and moto S3 with the Dockerfile's `ENV`, its non-root `USER` (when the tests
run as root), and only the scratch volume writable.

The virtualenv is cached under `.cache/image-venv/<hash of the requirements>/` (gitignored),
so only the first run after a requirements change pays for the install (~1 minute).
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _proctor_fixtures import make_recording, mediarecorder_chunks
from conftest import AWS_TEST_ENV, REPO_ROOT, MotoS3

REQUIREMENTS = REPO_ROOT / "containers" / "requirements.txt"
VENV_CACHE = REPO_ROOT / ".cache" / "image-venv"
IMAGES = {
    "task_analyzer": REPO_ROOT / "containers" / "task_analyzer" / "Dockerfile",
    "proctor_video": REPO_ROOT / "containers" / "proctor_video" / "Dockerfile",
}


# -- the Dockerfile, as far as running it needs ---------------------------------------------


@dataclass
class Dockerfile:
    copies: list[tuple[str, str]] = field(default_factory=list)  # (source in repo, dest)
    runs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    volumes: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    base: str = ""

    @property
    def python_version(self) -> str:
        """ "3.11" from `FROM python:3.11-slim-bookworm`."""
        image, _, tag = self.base.partition(":")
        assert image == "python", f"unexpected base image {self.base!r}"
        return ".".join(tag.split("-")[0].split(".")[:2])


def parse_dockerfile(path: Path) -> Dockerfile:
    """The instructions these Dockerfiles use; anything else is refused, not ignored."""
    parsed = Dockerfile()
    for line in _instructions(path.read_text()):
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "COPY":
            *sources, dest = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), f"COPY flags unsupported: {line}"
            parsed.copies += [(source, dest) for source in sources]
        elif op == "RUN":
            parsed.runs.append(rest)
        elif op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                parsed.env[key] = value
        elif op == "WORKDIR":
            parsed.workdir = rest
        elif op == "USER":
            parsed.user = rest
        elif op == "VOLUME":
            parsed.volumes += json.loads(rest) if rest.startswith("[") else rest.split()
        elif op == "ENTRYPOINT":
            parsed.entrypoint = json.loads(rest)
        elif op == "FROM":
            parsed.base = rest.split()[0]
        else:
            raise AssertionError(f"{path}: instruction {op} is not modelled by this test")
    return parsed


def _instructions(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


# -- the clean virtualenv ---------------------------------------------------------------------


def image_venv(python: str) -> Path:
    """A virtualenv of `python` with nothing but `containers/requirements.txt`, cached by the
    hash of both."""
    basis = REQUIREMENTS.read_bytes() + python.encode() + _version(python).encode()
    digest = hashlib.sha256(basis).hexdigest()[:16]
    target = VENV_CACHE / digest
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time
        if not (target / ".complete").exists():
            building = Path(tempfile.mkdtemp(prefix=f"{digest}-", dir=VENV_CACHE))
            try:
                subprocess.run([python, "-m", "venv", str(building)], check=True)
                pip = [str(building / "bin" / "python"), "-m", "pip", "-q"]
                install = [*pip, "install", "--no-cache-dir", "-r", str(REQUIREMENTS)]
                quiet = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
                subprocess.run(install, check=True, env=quiet)
                (building / ".complete").touch()
                os.chmod(building, 0o755)  # mkdtemp made it private; the USER must read it
                shutil.rmtree(target, ignore_errors=True)
                building.rename(target)  # only `python -m` is used: no shebangs to fix
            finally:
                shutil.rmtree(building, ignore_errors=True)
        # Builds for older requirements are dead weight.
        for stale in VENV_CACHE.iterdir():
            if stale.is_dir() and not stale.name.startswith(digest):
                shutil.rmtree(stale, ignore_errors=True)
    os.chmod(VENV_CACHE.parent, 0o755)
    os.chmod(VENV_CACHE, 0o755)
    return target


def _version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout.strip()


def image_python(dockerfile: Dockerfile, uid: int | None) -> str:
    """An interpreter of the image's Python version (from `FROM python:X.Y-...`) that the
    image's USER can run: the base interpreter of the dev venv (never the venv itself, so
    nothing of it leaks in), else a system one."""
    wanted = dockerfile.python_version
    candidates = [getattr(sys, "_base_executable", sys.executable)]
    candidates += [p for p in (shutil.which(f"python{wanted}"), f"/usr/bin/python{wanted}") if p]
    for python in dict.fromkeys(candidates):
        try:
            probe = subprocess.run(
                [python, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                user=uid,
                group=uid,
                extra_groups=[] if uid is not None else None,
                cwd="/",
            )
        except OSError:  # e.g. an interpreter under a home directory the USER cannot enter
            continue
        if probe.returncode == 0 and probe.stdout.strip() == wanted:
            return python
    raise AssertionError(f"no Python {wanted} with venv that uid {uid} can run: {candidates}")


@dataclass(frozen=True)
class Runtime:
    venv: Path
    uid: int | None  # the images' USER when the tests run as root (root ignores file modes)


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    dockerfiles = [parse_dockerfile(path) for path in IMAGES.values()]
    assert len({(d.python_version, d.user) for d in dockerfiles}) == 1, "images differ in base"
    uid = None
    if os.geteuid() == 0:
        user = dockerfiles[0].user
        assert user and user.isdigit(), "the images must set a numeric USER"
        uid = int(user)
    return Runtime(image_venv(image_python(dockerfiles[0], uid)), uid)


# -- laying out and running one image -------------------------------------------------------


@dataclass
class Image:
    name: str
    dockerfile: Dockerfile
    root: Path  # stands for the image's `/`
    scratch: Path  # the VOLUME, the only writable place
    venv: Path
    uid: int | None  # the Dockerfile's USER when the tests run as root

    def host_path(self, image_path: str) -> Path:
        volume = self.dockerfile.volumes[0]
        if image_path == volume or image_path.startswith(volume + "/"):
            return self.scratch / image_path[len(volume) :].lstrip("/")
        return self.root / image_path.lstrip("/")

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """ECS passes the Dockerfile's ENV plus overrides; paths are mapped to the layout."""
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.scratch),
            "LANG": "C.UTF-8",
        }
        for key, value in self.dockerfile.env.items():
            env[key] = str(self.host_path(value)) if value.startswith("/") else value
        return {**env, **extra}

    def run(
        self, extra_env: dict[str, str], *, timeout: float = 240
    ) -> subprocess.CompletedProcess:
        python, *args = self.dockerfile.entrypoint
        assert python == "python", self.dockerfile.entrypoint
        return subprocess.run(
            [str(self.venv / "bin" / "python"), *args],
            env=self.environment(extra_env),
            cwd=self.host_path(self.dockerfile.workdir),
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.uid,
            group=self.uid,
            extra_groups=[] if self.uid is not None else None,
        )


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


def _set_writable(tree: Path, writable: bool) -> None:
    for dirpath, _, filenames in os.walk(tree):
        for path in [Path(dirpath), *(Path(dirpath) / f for f in filenames)]:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
            os.chmod(path, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


@contextlib.contextmanager
def laid_out(name: str, runtime: Runtime) -> Iterator[Image]:
    dockerfile = parse_dockerfile(IMAGES[name])
    base = Path(tempfile.mkdtemp(prefix=f"image-{name}-"))
    os.chmod(base, 0o755)  # the USER must reach both places
    root, scratch = base / "root", base / "scratch"
    try:
        for source, dest in dockerfile.copies:
            src, dst = REPO_ROOT / source, root / dest.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dst)
        (root / dockerfile.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        scratch.mkdir(mode=0o700)
        if runtime.uid is not None:
            os.chown(scratch, runtime.uid, runtime.uid)
        _set_writable(root, False)
        yield Image(name, dockerfile, root, scratch, runtime.venv, runtime.uid)
    finally:
        _set_writable(base, True)
        shutil.rmtree(base, ignore_errors=True)


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
def test_dockerfile_installs_exactly_the_shared_requirements(name: str) -> None:
    dockerfile = parse_dockerfile(IMAGES[name])
    dest = {src: dst for src, dst in dockerfile.copies}.get("containers/requirements.txt")
    assert dest, "the image must COPY containers/requirements.txt"
    installs = [r for r in dockerfile.runs if "pip install" in r]
    assert len(installs) == 1 and f"-r {dest}" in installs[0], installs
    # Nothing else gets pip-installed by name on that line.
    words = shlex.split(installs[0].split("&&")[0])
    assert [w for w in words if "==" in w] == []
    assert dockerfile.entrypoint == ["python", "-m", name]


# Pinned although no container module imports it, and why.
NOT_IMPORTED_ON_PURPOSE = {"aiohttp": "google-genai's async transport (see requirements.txt)"}


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"requirements.txt: {line!r} is not pinned exactly"
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
    imports, like ffmpeg-python and tenacity once were) fails here, naming the files."""
    pins = requirement_pins()
    imported = imported_distributions()
    missing = {dist: sorted(files) for dist, files in imported.items() if dist not in pins}
    assert not missing, f"add these to containers/requirements.txt: {missing}"
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
