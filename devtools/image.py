"""The container images as they will really run, without Docker.

A clean virtualenv is built from the hash-pinned lock the Dockerfile installs
(`containers/requirements.txt`, or an image's own) alone, with the Dockerfile's
`--require-hashes` (no dev dependencies, no Airflow), the sources are laid out exactly as each
Dockerfile's `COPY` lines say (parsed from the Dockerfile, so the two cannot drift), its
bytecode step (`RUN <venv>/bin/python -m compileall`) is run on that layout, and the
`ENTRYPOINT` runs with the Dockerfile's `ENV`, its `USER` (when asked to and running as root),
and only the scratch volume writable.

This is the fast model of the images; `devtools/images.py` builds them for real (buildah or
buildx) and `tests/test_images_build.py` runs those.

`tests/test_image.py` runs both entrypoints end to end this way; `bench/bench_drain.py` runs
its fleet of containers this way, so neither measures the development virtualenv (which holds
Airflow's dependencies and, through optional imports, makes every container start slower).

Each virtualenv is cached under `.cache/image-venv/<hash of the lock>/` (gitignored), so
only the first use after a lock change pays for the install (~1 minute).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO_ROOT / "containers" / "requirements.txt"  # the lock both images share
VENV_CACHE = REPO_ROOT / ".cache" / "image-venv"
IMAGES = {
    "task_analyzer": REPO_ROOT / "containers" / "task_analyzer" / "Dockerfile",
    "proctor_video": REPO_ROOT / "containers" / "proctor_video" / "Dockerfile",
}
# The one build step run on the laid-out sources; the others (apt-get ffmpeg, the virtualenv
# and its pip install of the lock, useradd) are what the virtualenv and the host's ffmpeg
# stand for.
COMPILE = ("-m", "compileall")
# The pip flags the Dockerfiles install their lock with, and the model too.
PIP_FLAGS = ("--require-hashes",)


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
    base: str = ""  # FROM, with ARG defaults substituted
    args: dict[str, str] = field(default_factory=dict)  # ARG defaults

    @property
    def python_version(self) -> str:
        """ "3.11" from `FROM python:3.11-slim-bookworm@sha256:...`."""
        image, _, tag = self.base.split("@")[0].partition(":")
        if image.rsplit("/", 1)[-1] != "python":
            raise ValueError(f"unexpected base image {self.base!r}")
        return ".".join(tag.split("-")[0].split(".")[:2])

    @property
    def venv(self) -> str:
        """The image's virtualenv, from `RUN python3 -m venv /opt/venv ...`."""
        for run in self.runs:
            words = shlex.split(run)
            for i in range(len(words) - 3):
                if words[i].startswith("python") and words[i + 1 : i + 3] == ["-m", "venv"]:
                    return words[i + 3]
        raise ValueError("the Dockerfile makes no virtualenv (RUN python3 -m venv DIR)")

    @property
    def compile_steps(self) -> list[list[str]]:
        """The `RUN <python> -m compileall ...` lines, as argv."""
        steps = [shlex.split(run) for run in self.runs]
        return [argv for argv in steps if tuple(argv[1:3]) == COMPILE]

    @property
    def pip_install(self) -> list[str]:
        """The one `pip install` command (the words from `install` to the end of its `&&`)."""
        found = []
        for run in self.runs:
            for command in run.split("&&"):
                words = shlex.split(command)
                if "pip" in words and "install" in words:
                    found.append(words[words.index("install") :])
        if len(found) != 1:
            raise ValueError(f"expected one pip install, found {found}")
        return found[0]


def parse_dockerfile(path: Path) -> Dockerfile:
    """The instructions these Dockerfiles use; anything else is refused, not ignored."""
    parsed = Dockerfile()
    for line in _instructions(path.read_text()):
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "COPY":
            *sources, dest = shlex.split(rest)
            if any(s.startswith("--") for s in sources):
                raise ValueError(f"{path}: COPY flags are not modelled: {line}")
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
        elif op == "ARG":
            name, _, default = rest.partition("=")
            parsed.args[name] = default
        elif op == "FROM":
            parsed.base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: parsed.args[m.group(1)], rest.split()[0]
            )
        else:
            raise ValueError(f"{path}: instruction {op} is not modelled")
    return parsed


def requirements_file(dockerfile: Dockerfile) -> Path:
    """The lock in the repository that the Dockerfile's `pip install -r` installs."""
    words = dockerfile.pip_install
    if "-r" not in words:
        raise ValueError(f"pip install without -r: {words}")
    dest = words[words.index("-r") + 1]
    sources = [REPO_ROOT / src for src, dst in dockerfile.copies if dst == dest]
    if len(sources) != 1:
        raise ValueError(f"no COPY puts a file at {dest}")
    return sources[0]


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


def image_venv(python: str, requirements: Path = REQUIREMENTS) -> Path:
    """A virtualenv of `python` with nothing but the lock `requirements`, installed as the
    Dockerfiles do (`--require-hashes`), cached by the hash of both."""
    basis = requirements.read_bytes() + python.encode() + _version(python).encode()
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
                install = [*pip, "install", "--no-cache-dir", *PIP_FLAGS, "-r", str(requirements)]
                quiet = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
                subprocess.run(install, check=True, env=quiet)
                (building / ".complete").touch()
                os.chmod(building, 0o755)  # mkdtemp made it private; the USER must read it
                shutil.rmtree(target, ignore_errors=True)
                building.rename(target)  # only `python -m` is used: no shebangs to fix
            finally:
                shutil.rmtree(building, ignore_errors=True)
        # Builds for locks no Dockerfile installs any more are dead weight.
        for stale in VENV_CACHE.iterdir():
            if stale.is_dir() and stale.name.split("-")[0] not in _current_digests(python):
                shutil.rmtree(stale, ignore_errors=True)
    os.chmod(VENV_CACHE.parent, 0o755)
    os.chmod(VENV_CACHE, 0o755)
    return target


def _current_digests(python: str) -> set[str]:
    version = _version(python).encode()
    locks = {requirements_file(parse_dockerfile(path)) for path in IMAGES.values()}
    return {
        hashlib.sha256(lock.read_bytes() + python.encode() + version).hexdigest()[:16]
        for lock in locks
    }


def _version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout.strip()


def image_python(dockerfile: Dockerfile, uid: int | None) -> str:
    """An interpreter of the image's Python version (from `FROM python:X.Y-...`) that the
    image's USER can run: the base interpreter of the running venv (never the venv itself,
    so nothing of it leaks in), else a system one."""
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
    raise RuntimeError(f"no Python {wanted} with venv that uid {uid} can run: {candidates}")


@dataclass(frozen=True)
class Runtime:
    venvs: dict[str, Path]  # image name -> the virtualenv of the lock it installs
    uid: int | None  # the images' USER when running as root (root ignores file modes)


def runtime(*, as_image_user: bool = True) -> Runtime:
    """The images' shared interpreter and virtualenv; with `as_image_user` (and running as
    root) their numeric USER too, so file modes are enforced as in the image."""
    dockerfiles = [parse_dockerfile(path) for path in IMAGES.values()]
    if len({(d.python_version, d.user) for d in dockerfiles}) != 1:
        raise ValueError("the images differ in base image or USER")
    uid = None
    if as_image_user and os.geteuid() == 0:
        user = dockerfiles[0].user
        if not (user and user.isdigit()):
            raise ValueError("the images must set a numeric USER")
        uid = int(user)
    python = image_python(dockerfiles[0], uid)
    venvs = {
        name: image_venv(python, requirements_file(dockerfile))
        for name, dockerfile in zip(IMAGES, dockerfiles, strict=True)
    }
    return Runtime(venvs, uid)


# -- laying out and running one image -------------------------------------------------------


@dataclass
class Image:
    name: str
    dockerfile: Dockerfile
    root: Path  # stands for the image's `/`
    scratch: Path  # the VOLUME, the only writable place
    venv: Path
    uid: int | None  # the Dockerfile's USER when running as root

    def host_path(self, image_path: str) -> Path:
        volume, venv = self.dockerfile.volumes[0], self.dockerfile.venv
        if image_path == volume or image_path.startswith(volume + "/"):
            return self.scratch / image_path[len(volume) :].lstrip("/")
        if image_path == venv or image_path.startswith(venv + "/"):
            return self.venv / image_path[len(venv) :].lstrip("/")
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

    @property
    def argv(self) -> list[str]:
        python, *args = self.dockerfile.entrypoint
        if python != f"{self.dockerfile.venv}/bin/python":
            raise ValueError(f"ENTRYPOINT must run the virtualenv's python: {python}")
        return [str(self.host_path(python)), *args]

    @property
    def cwd(self) -> Path:
        return self.host_path(self.dockerfile.workdir)

    def run(
        self, extra_env: dict[str, str], *, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv,
            env=self.environment(extra_env),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.uid,
            group=self.uid,
            extra_groups=[] if self.uid is not None else None,
        )


def _set_writable(tree: Path, writable: bool) -> None:
    for dirpath, _, filenames in os.walk(tree):
        for path in [Path(dirpath), *(Path(dirpath) / f for f in filenames)]:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
            os.chmod(path, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


def _compile(image: Image, argv: list[str]) -> None:
    """`RUN python -m compileall ...` on the layout, with the image's interpreter."""
    args = [str(image.host_path(a)) if a.startswith("/") else a for a in argv]
    subprocess.run(args, check=True)


@contextlib.contextmanager
def laid_out(name: str, runtime: Runtime) -> Iterator[Image]:
    dockerfile = parse_dockerfile(IMAGES[name])
    base = Path(tempfile.mkdtemp(prefix=f"image-{name}-"))
    os.chmod(base, 0o755)  # the USER must reach both places
    root, scratch = base / "root", base / "scratch"
    image = Image(name, dockerfile, root, scratch, runtime.venvs[name], runtime.uid)
    try:
        for source, dest in dockerfile.copies:
            src, dst = REPO_ROOT / source, root / dest.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dst)
        (root / dockerfile.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for step in dockerfile.compile_steps:
            _compile(image, step)
        scratch.mkdir(mode=0o700)
        if runtime.uid is not None:
            os.chown(scratch, runtime.uid, runtime.uid)
        _set_writable(root, False)
        yield image
    finally:
        _set_writable(base, True)
        shutil.rmtree(base, ignore_errors=True)
