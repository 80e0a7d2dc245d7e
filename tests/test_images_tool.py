"""`make images` / `make push` / `make lock` as commands (devtools/images.py): the argv each
builder gets, the OCI spec a run gets, and the make targets' wiring. The real builds and runs
are tests/test_images_build.py; the lock's content is checked in tests/test_image.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools import images

ROOT = str(images.REPO_ROOT)
STORE = images.Storage(Path("/s/root"), Path("/s/run"), "vfs")


def test_buildx_builds_for_the_task_definitions_platform() -> None:
    argv = images.build_argv(
        "task_analyzer", images.BuildOptions("v1", base="python:3.11-slim-bookworm@sha256:ab"),
        "buildx",
    )  # fmt: skip
    assert argv == [
        "docker", "buildx", "build", "--platform", "linux/amd64", "--provenance=false",
        "--file", f"{ROOT}/containers/task_analyzer/Dockerfile",
        "--tag", "analysis-pipeline/task-analyzer:v1",
        "--build-arg=BASE_IMAGE=python:3.11-slim-bookworm@sha256:ab", "--load", ROOT,
    ]  # fmt: skip


def test_buildah_builds_without_a_daemon_sharing_layers() -> None:
    options = images.BuildOptions(
        "v1", base="localhost/base:1", pip_index="file:///w/simple", volumes=["/h:/w:ro"],
        storage=STORE,
    )  # fmt: skip
    assert images.build_argv("proctor_video", options, "buildah") == [
        "buildah", "--storage-driver", "vfs", "--root", "/s/root", "--runroot", "/s/run",
        "bud", "--isolation", "chroot", "--layers", "--platform", "linux/amd64",
        "--file", f"{ROOT}/containers/proctor_video/Dockerfile",
        "--tag", "analysis-pipeline/proctor-video:v1",
        "--build-arg=BASE_IMAGE=localhost/base:1", "--build-arg=PIP_INDEX_URL=file:///w/simple",
        "--volume=/h:/w:ro", ROOT,
    ]  # fmt: skip


def test_default_build_keeps_the_dockerfiles_pinned_base_and_index() -> None:
    argv = images.build_argv("task_analyzer", images.BuildOptions("v1"), "buildah")
    assert not [a for a in argv if a.startswith("--build-arg")]
    assert argv[:2] == ["buildah", "bud"]  # buildah's own storage configuration


def test_unknown_builder_and_buildx_volumes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown builder"):
        images.build_argv("task_analyzer", images.BuildOptions("v1"), "kaniko")
    with pytest.raises(ValueError, match="buildah option"):
        images.build_argv("task_analyzer", images.BuildOptions("v1", volumes=["/a:/b"]), "buildx")


def test_push_goes_to_the_repository_terraform_creates() -> None:
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    destination = f"{images.repository(registry, 'task_analyzer')}:v1"
    assert destination == f"{registry}/analysis-pipeline/task-analyzer:v1"
    argv = images.buildah_push_argv(
        storage=STORE, image="analysis-pipeline/task-analyzer:v1", destination=destination,
        digestfile=Path("/t/d"),
    )  # fmt: skip
    assert argv == [
        *STORE.buildah("push"), "--digestfile", "/t/d", "analysis-pipeline/task-analyzer:v1",
        f"docker://{destination}",
    ]  # fmt: skip
    assert images.docker_push_argvs(image="a:v1", destination=destination) == [
        ["docker", "tag", "a:v1", destination],
        ["docker", "push", destination],
    ]


def test_push_to_ecr_logs_in_with_a_token_through_stdin() -> None:
    from moto import mock_aws

    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert images.ecr_region(registry) == "eu-west-1"
    assert images.ecr_region("127.0.0.1:5000") is None  # another registry: no ECR login
    assert images.login_argv("buildah", registry, storage=STORE) == [
        *STORE.buildah("login"), "--username", "AWS", "--password-stdin", registry,
    ]  # fmt: skip
    assert images.login_argv("buildx", registry, storage=STORE) == [
        "docker", "login", "--username", "AWS", "--password-stdin", registry,
    ]  # fmt: skip
    with mock_aws():
        password = images.ecr_password("eu-west-1")
    assert password and ":" not in password


def test_run_spec_is_the_task_definitions_container() -> None:
    config = {
        "User": "10001",
        "Env": ["PATH=/usr/bin", "TMPDIR=/scratch"],
        "Entrypoint": ["/opt/venv/bin/python", "-m", "task_analyzer"],
        "WorkingDir": "/app",
        "Volumes": {"/scratch": {}},
    }
    spec = images.oci_spec(
        config, rootfs=Path("/r"), scratch=Path("/h"), env={"ANALYSIS_ID": "a"}, hostname="c"
    )
    assert spec["root"] == {"path": "/r", "readonly": True}
    process = spec["process"]
    assert process["user"] == {"uid": 10001, "gid": 10001, "additionalGids": []}
    assert process["args"] == config["Entrypoint"] and process["cwd"] == "/app"
    assert process["env"] == ["PATH=/usr/bin", "TMPDIR=/scratch", "ANALYSIS_ID=a"]
    assert process["noNewPrivileges"] and not any(process["capabilities"].values())
    assert {"destination": "/scratch", "type": "bind", "source": "/h",
            "options": ["rbind", "rw", "nosuid", "nodev"]} in spec["mounts"]  # fmt: skip
    assert "network" not in [n["type"] for n in spec["linux"]["namespaces"]]  # the fakes


def test_run_refuses_a_named_user_or_a_second_volume() -> None:
    base = {"Entrypoint": ["x"], "Volumes": {"/scratch": {}}}
    with pytest.raises(ValueError, match="numeric"):
        images.oci_spec({**base, "User": "analyzer"}, rootfs=Path("/r"), scratch=Path("/h"),
                        env={}, hostname="c")  # fmt: skip
    with pytest.raises(ValueError, match="one VOLUME"):
        images.oci_spec({**base, "Volumes": {"/a": {}, "/b": {}}}, rootfs=Path("/r"),
                        scratch=Path("/h"), env={}, hostname="c")  # fmt: skip


def test_crun_runs_without_cgroups_and_around_a_hybrid_hierarchy() -> None:
    plain = ["crun", "--cgroup-manager=disabled", "run", "--bundle", "/b", "c1"]
    assert images.crun_argv(Path("/b"), "c1", hybrid=False) == plain
    wrapped = images.crun_argv(Path("/b"), "c1", hybrid=True)
    assert wrapped[:3] == ["unshare", "--mount", "--propagation"] and wrapped[-6:] == plain


def test_lock_resolves_for_the_images_python_and_platform_as_of_its_date() -> None:
    shared = images.REPO_ROOT / "containers" / "requirements.txt"
    (lock,) = [lock for lock in images.locks() if lock.target == shared]
    argv = images.lock_argv(lock, output=Path("/o"), uv="uv")
    assert argv[:4] == ["uv", "pip", "compile", "containers/requirements.in"]
    for flag, value in [("--python-version", "3.11"), ("--python-platform",
                        "x86_64-manylinux_2_36"), ("--exclude-newer", lock.exclude_newer),
                        ("--output-file", "/o")]:  # fmt: skip
        assert argv[argv.index(flag) + 1] == value
    assert "--generate-hashes" in argv


def test_image_errors_name_the_command_and_its_stderr() -> None:
    with pytest.raises(images.ImageToolError) as caught:
        images._run(["sh", "-c", "echo building >&2; echo 'no space left' >&2; exit 7"])
    assert caught.value.returncode == 7 and "no space left" in str(caught.value)
    assert str(caught.value).startswith("sh -c ")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("images TAG=v1", "-m devtools.images build --tag v1"),
        ("images TAG=v1 BASE=local", "-m devtools.images build --tag v1 --base local"),
        ("push TAG=v1 REGISTRY=r.example", "-m devtools.images push --tag v1 --registry r.example"),
    ],
)
def test_make_targets_run_the_tool(target: str, expected: str) -> None:
    out = subprocess.run(["make", "-n", *target.split()], cwd=ROOT, capture_output=True, text=True)
    assert expected in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("target", ["images", "push"])
def test_make_targets_refuse_to_run_without_a_tag(target: str) -> None:
    out = subprocess.run(["make", target, "TAG="], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "TAG=... is required" in out.stdout
