"""The Airflow-side wheel as it ships, in clean virtualenvs with each supported Airflow line.

For the latest 3.2.x and 3.3.x from PyPI: a virtualenv with that Airflow and the providers
an Airflow image carries (the "existing Airflow"), then `pip install` of the wheel alone.
Airflow's version must not move; the DAGs come from the package's DAG bundle and import
without errors; both DAGs run end to end (`airflow dags test`, local launcher, moto S3,
fake Gemini) with the containers run by the images' own virtualenv
(`ANALYSIS_LOCAL_COMMAND`), since a clean Airflow has none of their dependencies. The MWAA
layout (`make mwaa`) is checked in one of them.

The Airflow virtualenvs are cached under `.cache/airflow-venvs/` (gitignored) by version and
the wheel's requirements; the first run installs them with uv (~1-2 min each).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import airflow_env as af
from devtools import mwaa
from devtools.demo import RECORDINGS_BUCKET, RESULTS_BUCKET
from devtools.image import runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[1]
# The newest release of each supported line (pyproject.toml: apache-airflow>=3.2.0,<3.4).
AIRFLOW_LINES = ("3.2.2", "3.3.2")
# What an Airflow image carries besides Airflow itself (the official image has these).
IMAGE_PROVIDERS = ("apache-airflow-providers-amazon[aiobotocore]", "apache-airflow-providers-http")
# An Airflow image is built with its release's constraints file, which cannot be downloaded
# here. Unconstrained, Airflow 3.2.2 resolves to releases newer than it was made with, which
# break its in-process execution API (every task of `dags test` errors): FastAPI 0.165 and
# cadwyn 9 (route building), svcs 26 (`State` has no `svcs_registry`). Its web stack is
# pinned to the development pins (constraints-dev.txt, which Airflow 3.3 runs with), and
# svcs to the release before 26.
CONSTRAINTS = REPO / "constraints-dev.txt"
WEB_STACK = ("fastapi==", "cadwyn==", "starlette==", "pydantic==", "pydantic-core==")
EXTRA_PINS = {"3.2.2": ["svcs<26"]}
VENV_CACHE = REPO / ".cache" / "airflow-venvs"
# What `make dist` builds from (pyproject.toml names the package and its readme).
WHEEL_SOURCES = ("pyproject.toml", "plugins/analysis_pipeline", "dags")
UV = str(Path(sys.executable).parent / "uv")
BUNDLES = [
    {
        "name": "dags-folder",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {},
    },
    {
        "name": "analysis_pipeline",
        "classpath": "analysis_pipeline.bundle.AnalysisPipelineDagBundle",
        "kwargs": {},
    },
]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist`'s wheel, built from a copy of the working tree's package files: a build in
    the repository leaves build/ and *.egg-info there for a while, which other test processes
    (parallel workers) would find on their import path as a second copy of the plugin."""
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("wheel-source")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *WHEEL_SOURCES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():  # a deleted file is still listed until it is committed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        check=True,
        cwd=out,
    )
    return mwaa.the_wheel(out)


def test_the_wheel_holds_the_dag_side_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"analysis_pipeline", f"{wheel.name.split('-py3')[0]}.dist-info"}
    for expected in (
        "analysis_pipeline/dags/task_analysis_dag.py",
        "analysis_pipeline/dags/proctor_video_dag.py",
        "analysis_pipeline/analysis_pipeline_plugin.py",
        "analysis_pipeline/launch/stopping.py",
        "analysis_pipeline/dags/analysis_callback_dag.py",
        "analysis_pipeline/callback/delivery.py",
        "analysis_pipeline/schemas/callback.schema.json",
        "analysis_pipeline/schemas/task_analysis.conf.schema.json",
    ):
        assert expected in names
    assert not [n for n in names if "test" in n.lower() or "devtools" in n]
    # Every file of the package ships (a new subpackage or data file needs pyproject.toml's
    # packages / package-data), and every DAG file.
    tracked = subprocess.run(
        ["git", "ls-files", "plugins/analysis_pipeline", "dags"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = {
        f.replace("plugins/", "", 1) if f.startswith("plugins/") else f"analysis_pipeline/{f}"
        for f in tracked
    }
    assert expected <= set(names), sorted(expected - set(names))
    metadata = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA")
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert "apache-airflow<3.4,>=3.2.0" in requires
    assert not [r for r in requires if "==" in r]  # ranges, never pins
    entry_points = zipfile.ZipFile(wheel).read(
        f"{wheel.name.split('-py3')[0]}.dist-info/entry_points.txt"
    )
    assert b"[airflow.plugins]" in entry_points


@dataclass(frozen=True)
class AirflowVenv:
    line: str
    path: Path
    migrated_db: Path | None = None

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def version(self) -> str:
        done = subprocess.run(
            [str(self.bin / "python"), "-c", "import airflow; print(airflow.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


def _existing_airflow(line: str, wheel: Path) -> Path:
    """A cached virtualenv with Airflow `line` and the image's providers, nothing of ours."""
    requires = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA")
    pins = [p for p in CONSTRAINTS.read_text().splitlines() if p.lower().startswith(WEB_STACK)]
    pins += EXTRA_PINS.get(line, [])
    key = hashlib.sha256(requires + line.encode() + "\n".join([*IMAGE_PROVIDERS, *pins]).encode())
    target = VENV_CACHE / f"airflow-{line}-{key.hexdigest()[:12]}"
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / f".lock-{line}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per line across test processes
        _build_airflow(line, target, pins)
        for stale in VENV_CACHE.glob(f"airflow-{line}-*"):
            if stale != target:
                subprocess.run(["rm", "-rf", str(stale)], check=True)
    return target


def _build_airflow(line: str, target: Path, pins: list[str]) -> None:
    if not (target / ".complete").exists():
        subprocess.run(["rm", "-rf", str(target)], check=True)
        python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([UV, "venv", "-q", "-p", python, str(target)], check=True)
        constraints = VENV_CACHE / f"constraints-{line}.txt"
        constraints.write_text("\n".join(pins) + "\n")
        install = [UV, "pip", "install", "-q", "-p", str(target / "bin" / "python")]
        install += ["-c", str(constraints)]
        subprocess.run([*install, f"apache-airflow=={line}", *IMAGE_PROVIDERS], check=True)
        (target / ".complete").touch()


@pytest.fixture(scope="session", params=AIRFLOW_LINES)
def airflow_venv(
    request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> AirflowVenv:
    venv = AirflowVenv(request.param, _existing_airflow(request.param, wheel))
    before = venv.version()
    # The wheel alone, as docs/DEPLOY.md installs it into an existing Airflow.
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "-q",
            "-p",
            str(venv.bin / "python"),
            "--reinstall-package",
            "analysis-pipeline-airflow",
            str(wheel),
        ],
        check=True,
    )
    assert before == request.param
    assert venv.version() == before, "installing the wheel changed Airflow"
    # One migration per line; each test starts from a copy of that database.
    home = tmp_path_factory.mktemp(f"airflow-{request.param}")
    env = {"PATH": f"{venv.bin}:/usr/bin:/bin", "AIRFLOW_HOME": str(home)}
    done = subprocess.run(
        [str(venv.bin / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return AirflowVenv(venv.line, venv.path, home / "airflow.db")


@dataclass
class Stack:
    s3_endpoint: str
    gemini_url: str
    uris: dict[str, str]
    container_command: str


def upload_small_recordings(endpoint: str, media: Path) -> dict[str, str]:
    """A 12-second screen recording and a 9-second webcam stream in 3-second chunks: what
    the DAGs and containers do does not depend on the length, the suite's time does."""
    from devtools.demo import _s3
    from devtools.media import make_live_webcam, make_screenshare, split_clusters

    screen = make_screenshare(media / "screen.mp4", duration=12, size="320x180", fps=5)
    webcam = make_live_webcam(media / "webcam.webm", duration=9, size="160x120", fps=5)
    s3 = _s3(endpoint)
    for bucket in (RECORDINGS_BUCKET, RESULTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(screen), RECORDINGS_BUCKET, "tasks/S-WHEEL/screen.mp4")
    for chunk in split_clusters(webcam, media / "chunks"):
        key = f"webcam/S-WHEEL/{int(chunk.stem):06d}.webm"
        s3.upload_file(str(chunk), RECORDINGS_BUCKET, key)
    return {
        "screenshare_uri": f"s3://{RECORDINGS_BUCKET}/tasks/S-WHEEL/screen.mp4",
        "webcam_uri": f"s3://{RECORDINGS_BUCKET}/webcam/S-WHEEL/",
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("wheel-stack")
    # The containers as their images ship: each image's own lock-only virtualenv, and the
    # sources; one launcher script picks the image by module.
    venvs = runtime(as_image_user=False).venvs
    launcher = root / "run-container"
    cases = "".join(
        f"  {name}) exec {venvs[name] / 'bin' / 'python'} -m {name} ;;\n" for name in venvs
    )
    launcher.write_text(
        f"#!/bin/sh\nexport PYTHONPATH={REPO / 'containers'}\n"
        f'case "$1" in\n{cases}  *) echo "no image for $1" >&2; exit 1 ;;\nesac\n'
    )
    launcher.chmod(0o755)
    command = f"{launcher} {{module}}"
    with (
        af.moto_s3(log_path=root / "moto.log") as s3_endpoint,
        af.fake_gemini(log_path=root / "gemini.log") as gemini_url,
    ):
        uris = upload_small_recordings(s3_endpoint, root / "media")
        yield Stack(s3_endpoint, gemini_url, uris, command)


def wheel_env(venv: AirflowVenv, stack: Stack, home: Path) -> dict[str, str]:
    """Airflow from `venv` alone: no repository path anywhere on its import path."""
    env = af.airflow_env(
        home,
        s3_endpoint=stack.s3_endpoint,
        recordings_bucket=RECORDINGS_BUCKET,
        results_bucket=RESULTS_BUCKET,
        gemini_base_url=stack.gemini_url,
        extra={
            "SEGMENT_SECONDS": "15",
            "GEMINI_API_KEY": "wheel-fake-key",
            "ANALYSIS_LOCAL_COMMAND": stack.container_command,
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(BUNDLES),
        },
    )
    env.pop("PYTHONPATH", None)
    # As a deployment: new DAGs start paused (docs/DEPLOY.md unpauses both).
    env.pop("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", None)
    env["PATH"] = f"{venv.bin}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
    env.pop("VIRTUAL_ENV", None)
    (home / "dags").mkdir(parents=True, exist_ok=True)
    assert venv.migrated_db is not None
    shutil.copyfile(venv.migrated_db, home / "airflow.db")
    return env


def airflow(venv: AirflowVenv, args: list[str], env: dict[str, str], cwd: Path):
    return subprocess.run(
        [str(venv.bin / "airflow"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def json_rows(output: str) -> list[dict]:
    """The JSON table an `airflow ... -o json` command prints after its log lines."""
    return json.loads([line for line in output.splitlines() if line.startswith("[")][-1])


def parsed_dags(venv: AirflowVenv, env: dict[str, str], cwd: Path) -> list[dict]:
    """Parse every bundle as the dag-processor does (`dags reserialize`); then no import
    error may be recorded, and the DAGs found are returned."""
    done = airflow(venv, ["dags", "reserialize"], env, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = airflow(venv, ["dags", "list-import-errors", "-o", "json"], env, cwd)
    assert errors.returncode == 0, errors.stderr[-3000:]
    assert json_rows(errors.stdout) == [], errors.stdout[-3000:]
    listed = airflow(venv, ["dags", "list", "-o", "json"], env, cwd)
    return json_rows(listed.stdout)


def test_both_dags_run_end_to_end_from_the_wheel(
    airflow_venv: AirflowVenv, stack: Stack, tmp_path: Path
) -> None:
    env = wheel_env(airflow_venv, stack, tmp_path / "airflow")
    found = parsed_dags(airflow_venv, env, tmp_path)
    assert {d["dag_id"]: d["bundle_name"] for d in found} == {
        "task_analysis": "analysis_pipeline",
        "proctor_video": "analysis_pipeline",
        "analysis_callback": "analysis_pipeline",
    }
    for dag_id in ("analysis_callback", "proctor_video", "task_analysis"):  # DEPLOY.md, "Unpause"
        assert airflow(airflow_venv, ["dags", "unpause", dag_id], env, tmp_path).returncode == 0
    listed = airflow(airflow_venv, ["dags", "list", "-o", "json"], env, tmp_path)
    paused = {d["dag_id"]: str(d["is_paused"]).lower() for d in json_rows(listed.stdout)}
    assert paused == {"task_analysis": "false", "proctor_video": "false",
                      "analysis_callback": "false"}  # fmt: skip
    plugins = airflow(airflow_venv, ["plugins", "-o", "json"], env, tmp_path)
    assert "analysis_pipeline" in plugins.stdout, plugins.stdout[-2000:]

    runs = {
        "task_analysis": {
            "submission_id": "S-WHEEL",
            "screenshare_uri": stack.uris["screenshare_uri"],
        },
        "proctor_video": {"attempt_id": "S-WHEEL", "webcam_uri": stack.uris["webcam_uri"]},
    }
    for dag_id, conf in runs.items():
        done = airflow(
            airflow_venv, ["dags", "test", dag_id, "-c", json.dumps(conf)], env, tmp_path
        )
        assert af._final_state(done.stdout + done.stderr) == "success", done.stdout[-4000:]
    s3 = af_s3(stack)
    for kind in ("task_analysis", "proctor_video"):
        body = s3.get_object(Bucket=RESULTS_BUCKET, Key=f"{kind}/S-WHEEL/result.json")["Body"]
        assert json.loads(body.read())["status"] == "complete"
        s3.delete_object(Bucket=RESULTS_BUCKET, Key=f"{kind}/S-WHEEL/result.json")


def af_s3(stack: Stack):
    from devtools.demo import _s3

    return _s3(stack.s3_endpoint)


# Once, in the newest line: the layout does not depend on the line.
@pytest.mark.parametrize("airflow_venv", [AIRFLOW_LINES[-1]], indirect=True)
def test_the_mwaa_layout_loads_the_same_dags(
    airflow_venv: AirflowVenv, wheel: Path, stack: Stack, tmp_path: Path
) -> None:
    written = mwaa.write_layout(wheel, tmp_path / "mwaa", airflow="3.3.2", python="3.12")
    requirements = written[0].read_text()
    assert f"/usr/local/airflow/plugins/{wheel.name}" in requirements
    assert "constraints-3.3.2/constraints-3.12.txt" in requirements
    assert zipfile.ZipFile(written[1]).namelist() == [wheel.name]
    env = wheel_env(airflow_venv, stack, tmp_path / "airflow")
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(tmp_path / "mwaa" / "dags")
    env.pop("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST")  # MWAA: the dags folder only
    found = parsed_dags(airflow_venv, env, tmp_path)
    assert {d["dag_id"]: d["bundle_name"] for d in found} == {
        "task_analysis": "dags-folder",
        "proctor_video": "dags-folder",
    }
