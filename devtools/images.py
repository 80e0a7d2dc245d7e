"""The container images built, pushed and run for real: `make lock`, `make images`, `make push`.

- **lock**: each `containers/**/requirements.in` resolves to the `requirements.txt` beside it
  (`uv pip compile --generate-hashes`: every transitive dependency pinned with its hashes,
  for the images' Python and platform, ignoring releases after the `exclude-newer:` date the
  input names, so the same input always gives the same lock).
- **build**: both Dockerfiles for `linux/amd64` (the task definitions' `X86_64`), with
  `docker buildx` when a Docker daemon answers, else Debian's `buildah` (chroot isolation,
  vfs storage: no daemon, no overlay mounts). The base is the Dockerfile's digest-pinned
  `BASE_IMAGE` unless `--base local` (or another image) replaces it.
- **base**: the local stand-in for that base, made from Debian packages alone (`mmdebstrap`
  bookworm + python3 3.11 and its venv module: the production base's Debian release and
  Python minor), for machines that reach no container registry.
- **push**: tag and push each image to its ECR repository (`<registry>/<project>/<container>`)
  and print the pushed digest, which Terraform may take instead of the tag.
- **run**: an image's `ENTRYPOINT` under `crun` as ECS runs it: its `ENV` plus the run's
  overrides, its `USER`, a read-only root filesystem, no capabilities, and a writable
  `/scratch` volume (the task definition's ephemeral storage).

The suite builds on the local base with a local index of the locked wheels (no registry, and
the machine's PyPI may sit behind a TLS proxy that the image does not trust);
`tests/test_images_build.py` and `tests/conftest.py` say how it is started in the background.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = REPO_ROOT / ".cache"
# The task definitions' runtime_platform (terraform/ecs.tf): LINUX / X86_64.
PLATFORM = "linux/amd64"
PROJECT = "analysis-pipeline"
# Package (Dockerfile directory, entrypoint module) → ECS container and ECR repository name.
CONTAINERS = {"task_analyzer": "task-analyzer", "proctor_video": "proctor-video"}
DOCKERFILES = {name: REPO_ROOT / "containers" / name / "Dockerfile" for name in CONTAINERS}
LOCAL_BASE = "localhost/analysis-pipeline-base:bookworm-py3.11"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
# The locks' target: the images' CPython on manylinux x86_64 with bookworm's glibc 2.36.
LOCK_PYTHON = "3.11"
LOCK_PLATFORM = "x86_64-manylinux_2_36"
STDERR_TAIL = 3000


class ImageToolError(RuntimeError):
    """A build, push, lock or run command failed: the command and the tail of its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr[-STDERR_TAIL:]
        super().__init__(f"{' '.join(self.argv)} exited {returncode}:\n{self.stderr_tail.rstrip()}")


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    timeout: float | None = None,
    quiet: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The one runner: quiet commands keep their output for the error; the others stream it
    (a build's progress) and keep stderr only."""
    proc = subprocess.run(
        list(argv),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=stdin,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if not quiet and proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise ImageToolError(argv, proc.returncode, (proc.stdout or "") + proc.stderr)
    return proc


# -- the lock ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lock:
    source: Path  # requirements.in
    target: Path  # the hash-pinned requirements.txt beside it

    @property
    def exclude_newer(self) -> str:
        found = re.search(r"^# exclude-newer: (\S+)$", self.source.read_text(), re.M)
        if not found:
            raise ValueError(f"{self.source}: no '# exclude-newer: <RFC 3339 time>' line")
        return found.group(1)


def locks() -> list[Lock]:
    """Every image requirement set: the shared one and any image's own."""
    sources = sorted((REPO_ROOT / "containers").rglob("requirements.in"))
    return [Lock(source, source.with_suffix(".txt")) for source in sources]


def lock_argv(lock: Lock, *, output: Path, uv: str = "uv") -> list[str]:
    return [
        uv, "pip", "compile", str(lock.source.relative_to(REPO_ROOT)),
        "--generate-hashes",
        "--python-version", LOCK_PYTHON,
        "--python-platform", LOCK_PLATFORM,
        "--exclude-newer", lock.exclude_newer,
        "--custom-compile-command", "make lock",
        "--no-progress", "--quiet",
        "--output-file", str(output),
    ]  # fmt: skip


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv not found: `make install` installs it into .venv/")
    return found


# The system trust store (a proxy's CA included), as pip and apt use; uv's default is its own.
LOCK_ENV = {"UV_NATIVE_TLS": "1", "UV_NO_CONFIG": "1"}


def compile_lock(lock: Lock, output: Path) -> None:
    _run(lock_argv(lock, output=output, uv=_uv()), env=LOCK_ENV, timeout=300)


def stale_locks() -> list[Lock]:
    """The locks that `make lock` would change (resolving again, as of their date)."""
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for lock in locks():
            fresh = Path(tmp) / f"{len(stale)}-requirements.txt"
            compile_lock(lock, fresh)
            if not lock.target.exists() or fresh.read_text() != lock.target.read_text():
                stale.append(lock)
    return stale


# -- where buildah keeps images ---------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """buildah's image store: its defaults (None), or a private one (the suite's, under
    .cache/, so it never touches an operator's images). Where no overlay mount is possible
    (some containers), STORAGE_DRIVER=vfs makes buildah work anyway, slower."""

    root: Path | None = None
    runroot: Path | None = None
    driver: str | None = None  # None: buildah's configured one (STORAGE_DRIVER, storage.conf)

    def flags(self) -> list[str]:
        flags = ["--storage-driver", self.driver] if self.driver else []
        if self.root:
            flags += ["--root", str(self.root)]
        if self.runroot:
            flags += ["--runroot", str(self.runroot)]
        return flags

    def buildah(self, *args: str) -> list[str]:
        return ["buildah", *self.flags(), *args]


def suite_storage() -> Storage:
    """The suite's private store: overlay where this machine mounts it (layers cost only
    their changes), else vfs (every layer a full copy of the tree: ~5x the disk and time)."""
    overlay = Storage(CACHE / "buildah" / "overlay", CACHE / "buildah" / "run", "overlay")
    probe = None
    try:
        probe = _run(overlay.buildah("from", "scratch")).stdout.strip()
        _run(overlay.buildah("mount", probe))
        return overlay
    except ImageToolError:
        return Storage(CACHE / "buildah" / "vfs", CACHE / "buildah" / "run", "vfs")
    finally:
        if probe:
            with contextlib.suppress(ImageToolError):
                _run(overlay.buildah("rm", probe))


# -- the local base image ---------------------------------------------------------------------

# What the production base (python:3.11-slim-bookworm) gives the Dockerfiles: Debian bookworm
# with apt, Python 3.11 with venv (and pip inside a venv), CA certificates. Documentation and
# translations are left out as in Debian's slim images.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_DPKG_OPTIONS = (
    # No fsync per unpacked file (as Debian's official images configure dpkg): a throwaway
    # build root, and fsync dominates dpkg's time on some filesystems (here ~4x).
    "force-unsafe-io",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def mmdebstrap_argv(output: Path) -> list[str]:
    return [
        "mmdebstrap", "--variant=apt", "--mode=root", "--format=tar", "--quiet",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt={option}" for option in BASE_DPKG_OPTIONS),
        "--aptopt=Acquire::Languages \"none\"",
        "bookworm", str(output),
        f"deb {DEBIAN_MIRROR} bookworm main",
        f"deb {DEBIAN_MIRROR} bookworm-updates main",
        f"deb {DEBIAN_SECURITY} bookworm-security main",
    ]  # fmt: skip


def base_recipe() -> str:
    """Identifies the base's recipe: a changed package list or option rebuilds it."""
    basis = json.dumps([mmdebstrap_argv(Path("-")), BASE_ENV])
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def _image_labels(storage: Storage, image: str) -> dict[str, str] | None:
    try:
        proc = _run(storage.buildah("inspect", "--type", "image", image))
    except ImageToolError:
        return None
    return json.loads(proc.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}


def make_local_base(storage: Storage, *, image: str = LOCAL_BASE) -> str:
    """The local base image (kept in `storage`; remade only when its recipe changed)."""
    recipe = base_recipe()
    if (_image_labels(storage, image) or {}).get("base-recipe") == recipe:
        return image
    with tempfile.TemporaryDirectory(prefix="base-", dir=_scratch_dir()) as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        _run(mmdebstrap_argv(tarball), timeout=1800)
        container = _run(storage.buildah("from", "scratch")).stdout.strip()
        try:
            _run(storage.buildah("add", container, str(tarball), "/"))
            config = [f"--env={key}={value}" for key, value in BASE_ENV.items()]
            config += [f"--label=base-recipe={recipe}", "--cmd=/bin/bash"]
            config += ["--os=linux", "--arch=amd64"]
            _run(storage.buildah("config", *config, container))
            _run(storage.buildah("commit", "--quiet", "--rm", container, image))
        except BaseException:
            _run(storage.buildah("rm", container))
            raise
    return image


def _scratch_dir() -> str:
    CACHE.mkdir(exist_ok=True)
    return str(CACHE)


# -- a local index of the locked wheels -------------------------------------------------------


def wheelhouse(lock_file: Path) -> Path:
    """A PEP 503 index (plain files) holding exactly the wheels `lock_file` pins, downloaded
    here with their hashes checked, cached by the lock's content. A build mounts it and
    points PIP_INDEX_URL at it; pip inside the image checks the hashes again."""
    digest = hashlib.sha256(lock_file.read_bytes()).hexdigest()[:16]
    root = CACHE / "wheelhouse" / digest
    if (root / ".complete").exists():
        return root
    files = Path(tempfile.mkdtemp(prefix="wheels-", dir=_scratch_dir()))
    try:
        _run([
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--require-hashes", "--no-deps", "--only-binary=:all:",
            # This machine's platform (the suite builds for it: linux/amd64), the images' Python.
            "--python-version", LOCK_PYTHON,
            "-r", str(lock_file), "-d", str(files),
        ], timeout=600)  # fmt: skip
        simple = files / "simple"
        for wheel in sorted(files.glob("*.whl")):
            project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
            (simple / project).mkdir(parents=True, exist_ok=True)
            wheel.rename(simple / project / wheel.name)
        for project in simple.iterdir():
            links = "".join(
                f'<a href="{html.escape(w.name)}">{html.escape(w.name)}</a>\n'
                for w in sorted(project.glob("*.whl"))
            )
            (project / "index.html").write_text(
                f"<!DOCTYPE html><html><body>\n{links}</body></html>\n"
            )
        (files / ".complete").touch()
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        files.rename(root)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    return root


# -- building -----------------------------------------------------------------------------------


def local_name(name: str, tag: str) -> str:
    """The image's name before a push: `analysis-pipeline/task-analyzer:<tag>`."""
    return f"{PROJECT}/{CONTAINERS[name]}:{tag}"


def repository(registry: str, name: str, *, project: str = PROJECT) -> str:
    """The ECR repository Terraform creates for `name` (terraform/main.tf `ecr_name`)."""
    return f"{registry.rstrip('/')}/{project}/{CONTAINERS[name]}"


def buildx_build_argv(
    *, dockerfile: Path, tag: str, build_args: Mapping[str, str], platform: str = PLATFORM
) -> list[str]:
    """`docker buildx build` for the task definitions' platform, loaded into the local daemon
    (`make push` tags and pushes it). No provenance attestation: with one, the pushed tag is an
    index that ECS resolves the same way but `docker inspect` shows no single digest."""
    args = [f"--build-arg={key}={value}" for key, value in build_args.items()]
    return [
        "docker", "buildx", "build", "--platform", platform, "--provenance=false",
        "--file", str(dockerfile), "--tag", tag, *args, "--load", str(REPO_ROOT),
    ]  # fmt: skip


def buildah_build_argv(
    *,
    storage: Storage,
    dockerfile: Path,
    tag: str,
    build_args: Mapping[str, str],
    volumes: Sequence[str] = (),
    platform: str = PLATFORM,
) -> list[str]:
    """`buildah bud` without a daemon: chroot isolation (no user namespaces or runtime
    needed), cached layers (the two Dockerfiles share everything above their sources)."""
    args = [f"--build-arg={key}={value}" for key, value in build_args.items()]
    return storage.buildah(
        "bud", "--isolation", "chroot", "--layers", "--platform", platform,
        "--file", str(dockerfile), "--tag", tag, *args,
        *(f"--volume={volume}" for volume in volumes), str(REPO_ROOT),
    )  # fmt: skip


def docker_daemon() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except (ImageToolError, subprocess.TimeoutExpired):
        return False
    return True


def choose_builder(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if docker_daemon():
        return "buildx"
    if shutil.which("buildah"):
        return "buildah"
    raise RuntimeError("no builder: need a Docker daemon with buildx, or buildah (apt)")


@dataclass
class BuildOptions:
    tag: str
    builder: str = "auto"
    base: str | None = None  # None: the Dockerfile's digest-pinned BASE_IMAGE
    pip_index: str | None = None  # None: the Dockerfile's PIP_INDEX_URL (PyPI)
    volumes: list[str] = field(default_factory=list)  # buildah only (the local wheelhouse)
    storage: Storage = field(default_factory=Storage)

    def build_args(self) -> dict[str, str]:
        args = {}
        if self.base:
            args["BASE_IMAGE"] = self.base
        if self.pip_index:
            args["PIP_INDEX_URL"] = self.pip_index
        return args


def build_argv(name: str, options: BuildOptions, builder: str) -> list[str]:
    common = {
        "dockerfile": DOCKERFILES[name],
        "tag": local_name(name, options.tag),
        "build_args": options.build_args(),
    }
    if builder == "buildx":
        if options.volumes:
            raise ValueError("build-time volumes are a buildah option")
        return buildx_build_argv(**common)
    if builder == "buildah":
        return buildah_build_argv(storage=options.storage, volumes=options.volumes, **common)
    raise ValueError(f"unknown builder {builder!r} (buildx, buildah or auto)")


def with_local_wheels(name: str, options: BuildOptions) -> BuildOptions:
    """The build's pip reads a local index of the image's lock, downloaded on this host (whose
    pip may trust a TLS proxy's CA that the image does not, or reach a mirror it cannot):
    mounted into the build, so buildah only. The hashes are checked on both sides."""
    index = wheelhouse(_requirements_copied(name))
    return dataclasses.replace(
        options, pip_index="file:///wheelhouse/simple", volumes=[f"{index}:/wheelhouse:ro"]
    )


def build(
    names: Sequence[str], options: BuildOptions, *, quiet: bool = False, local_wheels: bool = False
) -> dict[str, str]:
    """Builds `names` in order (the second reuses the first's shared layers); returns each
    image's local name."""
    builder = choose_builder(options.builder)
    if local_wheels and builder != "buildah":
        raise ValueError("local wheels are mounted into the build: a buildah option")
    built = {}
    for name in names:
        image_options = with_local_wheels(name, options) if local_wheels else options
        _run(build_argv(name, image_options, builder), timeout=3600, quiet=quiet)
        built[name] = local_name(name, options.tag)
    return built


# -- pushing ------------------------------------------------------------------------------------


def buildah_push_argv(
    *, storage: Storage, image: str, destination: str, digestfile: Path, tls_verify: bool = True
) -> list[str]:
    flags = [] if tls_verify else ["--tls-verify=false"]
    return storage.buildah(
        "push", *flags, "--digestfile", str(digestfile), image, f"docker://{destination}"
    )


def docker_push_argvs(*, image: str, destination: str) -> list[list[str]]:
    return [["docker", "tag", image, destination], ["docker", "push", destination]]


ECR_REGISTRY = re.compile(r"^\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def ecr_region(registry: str) -> str | None:
    """The Region of an ECR registry host, None for any other registry."""
    found = ECR_REGISTRY.match(registry)
    return found.group("region") if found else None


def ecr_password(region: str) -> str:
    """A 12-hour ECR login password for the caller's AWS credentials: through boto3 when it
    is installed (the ops and dev virtualenvs), else the AWS CLI."""
    try:
        import boto3
    except ImportError:
        return _run(["aws", "ecr", "get-login-password", "--region", region]).stdout.strip()
    data = boto3.client("ecr", region_name=region).get_authorization_token()
    token = data["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    if user != "AWS" or not password:
        raise RuntimeError("unexpected ECR authorization token (not AWS:<password>)")
    return password


def login_argv(builder: str, registry: str, *, storage: Storage) -> list[str]:
    """The password goes through stdin: never an argument, a file or a log line."""
    login = ["login", "--username", "AWS", "--password-stdin", registry]
    return storage.buildah(*login) if builder == "buildah" else ["docker", *login]


def push(
    names: Sequence[str],
    *,
    tag: str,
    registry: str,
    builder: str = "auto",
    storage: Storage | None = None,
    tls_verify: bool = True,
) -> dict[str, str]:
    """Pushes each built `<project>/<container>:<tag>` to `<registry>/<project>/<container>:<tag>`
    (logging in first when the registry is ECR) and returns `repository@sha256:...` per image
    (what Terraform's `image_digest` takes)."""
    builder, storage = choose_builder(builder), storage or Storage()
    region = ecr_region(registry)
    if region:
        _run(login_argv(builder, registry, storage=storage), stdin=ecr_password(region))
    pushed = {}
    for name in names:
        image, destination = local_name(name, tag), f"{repository(registry, name)}:{tag}"
        if builder == "buildah":
            with tempfile.TemporaryDirectory() as tmp:
                digestfile = Path(tmp) / "digest"
                _run(buildah_push_argv(storage=storage, image=image, destination=destination,
                                       digestfile=digestfile, tls_verify=tls_verify),
                     timeout=3600)  # fmt: skip
                digest = digestfile.read_text().strip()
        else:
            for argv in docker_push_argvs(image=image, destination=destination):
                _run(argv, timeout=3600)
            digests = _run(["docker", "inspect", "--format", "{{json .RepoDigests}}", image])
            found = [
                d
                for d in json.loads(digests.stdout)
                if d.startswith(repository(registry, name) + "@")
            ]
            digest = found[0].split("@", 1)[1]
        pushed[name] = f"{repository(registry, name)}@{digest}"
    return pushed


def terraform_registry() -> str:
    """The registry of the repositories the current Terraform state holds."""
    proc = _run(["terraform", "-chdir=terraform", "output", "-json", "ecr_repository_urls"])
    urls = json.loads(proc.stdout)
    return next(iter(urls.values())).split("/", 1)[0]


# -- running one image as ECS would -------------------------------------------------------------


def image_config(storage: Storage, image: str) -> dict:
    """The image's OCI config: Env, Entrypoint, Cmd, User, WorkingDir, Volumes."""
    proc = _run(storage.buildah("inspect", "--type", "image", image))
    return json.loads(proc.stdout)["OCIv1"]["config"]


def _user(config: Mapping) -> tuple[int, int]:
    """`USER 10001` or `10001:10001`; numeric only, as the task definition's `user` is."""
    uid, _, gid = str(config.get("User") or "0").partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ValueError(f"the image's USER must be numeric, not {config.get('User')!r}")
    return int(uid), int(gid or uid)


def oci_spec(
    config: Mapping,
    *,
    rootfs: Path,
    scratch: Path,
    env: Mapping[str, str],
    hostname: str,
    args: Sequence[str] | None = None,
) -> dict:
    """An OCI runtime spec for one run, as the task definitions configure the container:
    read-only root, the image's USER, every capability dropped, no new privileges, the
    scratch volume writable; the host's network (the suite's fakes listen on loopback)."""
    uid, gid = _user(config)
    environment = dict(item.split("=", 1) for item in config.get("Env") or [])
    environment.update(env)
    volumes = list(config.get("Volumes") or {})
    if len(volumes) != 1:
        raise ValueError(f"expected one VOLUME (the scratch space), found {volumes}")
    no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "permitted")}
    return {
        "ociVersion": "1.0.2",
        "hostname": hostname,
        "root": {"path": str(rootfs), "readonly": True},
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": []},
            "args": list(args or [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]),
            "env": [f"{key}={value}" for key, value in environment.items()],
            "cwd": config.get("WorkingDir") or "/",
            "capabilities": no_caps,
            "noNewPrivileges": True,
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": volumes[0], "type": "bind", "source": str(scratch),
             "options": ["rbind", "rw", "nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }  # fmt: skip


def hybrid_cgroups() -> bool:
    """cgroup v1 controllers plus an empty v2 hierarchy at /sys/fs/cgroup/unified (systemd's
    "hybrid" layout, and some sandboxes'): crun refuses it even with cgroups disabled."""
    with contextlib.suppress(OSError):
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        types = {line.split()[1]: line.split()[2] for line in mounts if len(line.split()) > 2}
        return (
            types.get("/sys/fs/cgroup/unified") == "cgroup2"
            and types.get("/sys/fs/cgroup") != "cgroup2"
        )
    return False


def crun_argv(bundle: Path, container_id: str, *, hybrid: bool) -> list[str]:
    """`crun run` without cgroups (the run is a test of the image, not of limits); on a
    hybrid host, inside a private mount namespace with the empty v2 hierarchy unmounted."""
    run = ["crun", "--cgroup-manager=disabled", "run", "--bundle", str(bundle), container_id]
    if not hybrid:
        return run
    script = 'umount /sys/fs/cgroup/unified && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *run]


@dataclass
class Container:
    """One working container of an image: its root filesystem and its scratch volume."""

    image: str
    storage: Storage
    rootfs: Path
    scratch: Path
    config: dict
    name: str

    def run(
        self,
        env: Mapping[str, str],
        *,
        timeout: float = 300,
        args: Sequence[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The ENTRYPOINT (or `args` instead), once, with the image's ENV plus `env` (what
        containerOverrides passes); returns whatever the exit code (the caller asserts)."""
        with tempfile.TemporaryDirectory(prefix="bundle-") as bundle:
            spec = oci_spec(
                self.config,
                rootfs=self.rootfs,
                scratch=self.scratch,
                env=env,
                hostname=self.name,
                args=args,
            )
            (Path(bundle) / "config.json").write_text(json.dumps(spec))
            run_id = f"{self.name}-{time.monotonic_ns()}"
            argv = crun_argv(Path(bundle), run_id, hybrid=hybrid_cgroups())
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def container(image: str, *, storage: Storage) -> Iterator[Container]:
    """A working container of `image` (buildah from + mount) and an empty scratch volume owned
    by the image's USER; both are removed afterwards."""
    config = image_config(storage, image)
    uid, gid = _user(config)
    name = _run(storage.buildah("from", "--pull=never", image)).stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="scratch-"))
    try:
        rootfs = Path(_run(storage.buildah("mount", name)).stdout.strip())
        os.chmod(scratch, 0o700)
        os.chown(scratch, uid, gid)
        yield Container(image, storage, rootfs, scratch, config, name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(ImageToolError):
            _run(storage.buildah("rm", name))


# -- the suite's images -------------------------------------------------------------------------

SUITE_TAG = "suite"


def suite_images(*, storage: Storage | None = None) -> dict[str, str]:
    """Both images built for real on the local base, as the suite runs them: the base made
    once per recipe, each lock's wheels downloaded once, the layers cached in `storage`
    (one builder at a time: a file lock). Returns package name -> image."""
    (CACHE / "buildah").mkdir(parents=True, exist_ok=True)
    with open(CACHE / "buildah" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        storage = storage or suite_storage()
        base = make_local_base(storage)
        options = BuildOptions(SUITE_TAG, "buildah", base=base, storage=storage)
        return build(sorted(CONTAINERS), options, quiet=True, local_wheels=True)


def _requirements_copied(name: str) -> Path:
    """The lock a Dockerfile COPYs (the shared one, or the image's own)."""
    from devtools.image import parse_dockerfile, requirements_file

    return requirements_file(parse_dockerfile(DOCKERFILES[name]))


# -- the command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.images", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    lock = commands.add_parser("lock", help="resolve containers/**/requirements.in into locks")
    lock.add_argument("--check", action="store_true", help="exit 1 if `lock` would change one")
    commands.add_parser("base", help=f"make the local Debian base image {LOCAL_BASE}")
    commands.add_parser("suite", help="build what the test suite builds, in its own storage")
    for command in ("build", "push"):
        sub = commands.add_parser(command, help=f"{command} both images ({PLATFORM})")
        sub.add_argument("--tag", required=True)
        sub.add_argument("--builder", choices=["auto", "buildx", "buildah"], default="auto")
        sub.add_argument("--image", action="append", choices=sorted(CONTAINERS))
    build_ = commands.choices["build"]
    build_.add_argument("--base", help="'local' (made first) or an image; default: the pin")
    build_.add_argument("--pip-index", help="PIP_INDEX_URL for the build (a mirror)")
    build_.add_argument(
        "--local-wheels", action="store_true", help="buildah: the lock's wheels from this host"
    )
    push_ = commands.choices["push"]
    push_.add_argument("--registry", help="default: from terraform output ecr_repository_urls")
    push_.add_argument("--insecure", action="store_true", help="buildah: a local http registry")
    return parser


def _lock_command(*, check: bool) -> int:
    if check:
        stale = stale_locks()
        for lock in stale:
            print(f"{_rel(lock.target)} is not what {_rel(lock.source)} gives: run `make lock`")
        return 1 if stale else 0
    for lock in locks():
        compile_lock(lock, lock.target)
        print(f"locked {_rel(lock.source)} -> {_rel(lock.target)}")
    return 0


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started, code = time.monotonic(), 0
    names = sorted(getattr(args, "image", None) or CONTAINERS)
    if args.command == "lock":
        code = _lock_command(check=args.check)
    elif args.command == "base":
        print(make_local_base(Storage()))
    elif args.command == "suite":
        for name, image in suite_images().items():
            print(f"{name}: {image}")
    elif args.command == "build":
        base = make_local_base(Storage()) if args.base == "local" else args.base
        options = BuildOptions(args.tag, args.builder, base=base, pip_index=args.pip_index)
        for name, image in build(names, options, local_wheels=args.local_wheels).items():
            print(f"{name}: {image} ({PLATFORM})")
    elif args.command == "push":
        registry = args.registry or terraform_registry()
        pushed = push(
            names, tag=args.tag, registry=registry, builder=args.builder,
            tls_verify=not args.insecure,
        )  # fmt: skip
        for name, reference in pushed.items():
            print(f"{repository(registry, name)}:{args.tag} pushed: {reference}")
    print(f"{args.command} took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
