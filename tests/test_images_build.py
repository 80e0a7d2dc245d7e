"""Both Dockerfiles built for real with buildah and each image's entrypoint run end to end.

The base is made locally from Debian packages (`devtools/images.py`: mmdebstrap bookworm +
Python 3.11, the production base's Debian release and Python minor), both images are built on
it for linux/amd64 (`--build-arg BASE_IMAGE=<local base>`; the pip install reads a local index
of the locked wheels, hashes checked), and each image runs under crun as its task definition
runs it: the image's ENV and USER, a read-only root filesystem, no capabilities, only the
/scratch volume writable, against the fake Gemini and moto S3.

The build starts in the background when collection selects these tests (tests/conftest.py);
a clean machine pays ~2 minutes for it (bench/RESULTS.md "Image builds"), a warm cache a few
seconds. The fast model of the same images is tests/test_image.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _images import SuiteImages, local_registry, start_build
from _proctor_fixtures import make_recording, mediarecorder_chunks
from conftest import AWS_TEST_ENV, REPO_ROOT, MotoS3

from devtools import images
from devtools.image import IMAGES, parse_dockerfile, requirements_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="session")
def built_images() -> SuiteImages:
    return start_build().result(timeout=1800)


@pytest.fixture
def task_image(built_images: SuiteImages) -> Iterator[images.Container]:
    with images.container(built_images.images["task_analyzer"], storage=built_images.storage) as c:
        yield c


@pytest.fixture
def proctor_image(built_images: SuiteImages) -> Iterator[images.Container]:
    with images.container(built_images.images["proctor_video"], storage=built_images.storage) as c:
        yield c


def gemini_env(fake: Any, moto: MotoS3) -> dict[str, str]:
    return {
        **AWS_TEST_ENV,
        "AWS_ENDPOINT_URL": moto.endpoint,
        "GEMINI_API_KEY": "image-test-key",
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_MAX_ATTEMPTS": "2",
    }


def _distributions(site_packages: Path) -> dict[str, str]:
    found = {}
    for info in site_packages.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def _lock_pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, _, version = line.split(" ")[0].partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_local_base_has_the_production_base_debian_release_and_python(
    built_images: SuiteImages,
) -> None:
    dockerfile = parse_dockerfile(IMAGES["task_analyzer"])
    release = re.search(r"-slim-(\w+)", dockerfile.base).group(1)  # python:3.11-slim-bookworm
    with images.container(images.LOCAL_BASE, storage=built_images.storage) as base:
        os_release = (base.rootfs / "etc" / "os-release").read_text()
        python3 = (base.rootfs / "usr" / "bin" / "python3").readlink()
    assert f"VERSION_CODENAME={release}" in os_release
    assert str(python3) == f"python{dockerfile.python_version}"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_built_image_is_what_its_dockerfile_and_lock_say(
    name: str, built_images: SuiteImages
) -> None:
    """The platform of the task definitions, the Dockerfile's ENV/USER/ENTRYPOINT (what the
    image model in devtools/image.py reads), exactly the lock's distributions, ffmpeg, and
    bytecode beside every source."""
    dockerfile = parse_dockerfile(IMAGES[name])
    inspected = json.loads(
        images._run(
            built_images.storage.buildah("inspect", "--type", "image", built_images.images[name])
        ).stdout
    )["OCIv1"]
    assert (inspected["os"], inspected["architecture"]) == ("linux", "amd64")  # X86_64
    config = inspected["config"]
    assert config["Entrypoint"] == dockerfile.entrypoint and not config.get("Cmd")
    assert config["User"] == dockerfile.user == "10001"
    assert config["WorkingDir"] == dockerfile.workdir
    assert list(config["Volumes"]) == dockerfile.volumes == ["/scratch"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert {k: env[k] for k in dockerfile.env} == dockerfile.env

    with images.container(built_images.images[name], storage=built_images.storage) as image:
        root = image.rootfs
        site = root / dockerfile.venv.lstrip("/") / "lib" / f"python{dockerfile.python_version}"
        installed = _distributions(site / "site-packages")
        assert (root / "usr" / "bin" / "ffmpeg").exists()
        sources = list((root / "app").rglob("*.py"))
        compiled = [p for p in sources if list((p.parent / "__pycache__").glob(f"{p.stem}.*.pyc"))]
        assert not (root / "tmp" / "requirements.txt").exists()
    locked = _lock_pins(requirements_file(dockerfile))
    assert {k: v for k, v in installed.items() if k not in ("pip", "setuptools")} == locked
    assert len(sources) > 20 and compiled == sources


def test_image_root_filesystem_is_read_only_and_the_user_is_not_root(
    task_image: images.Container,
) -> None:
    probe = (
        "import os, pathlib; print(os.getuid(), os.getgid());"
        "pathlib.Path('/scratch/ok').write_text('x');"
        "pathlib.Path('/app/task_analyzer/x').write_text('x')"
    )
    proc = task_image.run({}, args=["/opt/venv/bin/python", "-c", probe])
    assert proc.returncode == 1
    assert proc.stdout.split() == ["10001", "10001"]
    assert "Read-only file system" in proc.stderr
    assert (task_image.scratch / "ok").read_text() == "x"


def test_task_analyzer_image_end_to_end(
    task_image: images.Container, moto_s3: MotoS3, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("image-task.mp4", duration=24, codec="h264")
    moto_s3.put("s3://recordings/built-task/screen.mp4", clip.read_bytes())
    proc = task_image.run({
        **gemini_env(fake_gemini, moto_s3),
        "ANALYSIS_ID": "built-task",
        "INPUT_URI": "s3://recordings/built-task/screen.mp4",
        "OUTPUT_URI": "s3://results/built-task/",
        "SEGMENT_SECONDS": "10",
        "ANALYSIS_CONTEXT": json.dumps({"task_brief": "Write a parser"}),
    })  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = moto_s3.get_json("s3://results/built-task/result.json")
    assert result["status"] == "complete", result["error"]
    assert result["coverage"]["segments_analysed"] >= 2 and result["usage"]["calls"] >= 3
    assert "finished complete" in proc.stdout.strip().splitlines()[-1]
    assert "Gemini transport: aiohttp" in proc.stdout  # the locked transport, not a fallback
    assert "built-task/report.html" in moto_s3.keys("s3://results/built-task/")
    assert fake_gemini.stats["live_files"] == 0
    assert list(task_image.scratch.iterdir()) == []  # the run's temporary files are gone


def test_proctor_video_image_end_to_end(
    proctor_image: images.Container, moto_s3: MotoS3, fake_gemini: Any, tmp_path: Path
) -> None:
    chunks = mediarecorder_chunks(make_recording(tmp_path / "webcam.webm", 12))
    for i, chunk in enumerate(chunks):
        moto_s3.put(f"s3://recordings/built-proctor/{i}.webm", chunk)
    proc = proctor_image.run({
        **gemini_env(fake_gemini, moto_s3),
        "ANALYSIS_ID": "built-proctor",
        "INPUT_URI": "s3://recordings/built-proctor/",
        "OUTPUT_URI": "s3://results/built-proctor/",
        "SEGMENT_SECONDS": "10",
    })  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = moto_s3.get_json("s3://results/built-proctor/result.json")
    assert result["status"] == "complete", result["error"]
    assert "finished complete" in proc.stdout.strip().splitlines()[-1]
    assert "built-proctor/video.webm" in moto_s3.keys("s3://results/built-proctor/")
    assert fake_gemini.stats["live_files"] == 0


def _registry_get(url: str, accept: str) -> tuple[dict, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()), response.headers.get("Docker-Content-Digest", "")


MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)


def test_push_sends_both_images_to_their_repositories_with_their_digests(
    built_images: SuiteImages, tmp_path: Path
) -> None:
    """`make push` as far as this machine allows: a real registry on loopback instead of ECR.
    Each image lands in `<registry>/analysis-pipeline/<container>:<tag>`, and the digest push
    returns (what Terraform's image_digest takes) is the manifest the registry serves for the
    tag, a linux/amd64 image with the Dockerfile's USER and ENTRYPOINT."""
    with local_registry(tmp_path) as registry:
        pushed = images.push(
            sorted(IMAGES), tag=images.SUITE_TAG, registry=registry, builder="buildah",
            storage=built_images.storage, tls_verify=False,
        )  # fmt: skip
        for name, reference in pushed.items():
            repository = f"analysis-pipeline/{images.CONTAINERS[name]}"
            assert reference.startswith(f"{registry}/{repository}@")
            digest = reference.split("@", 1)[1]
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)  # images.tf's validation
            base = f"http://{registry}/v2/{repository}"
            manifest, served = _registry_get(f"{base}/manifests/{images.SUITE_TAG}", MANIFEST_TYPES)
            assert served == digest
            config, _ = _registry_get(f"{base}/blobs/{manifest['config']['digest']}", "*/*")
            assert (config["os"], config["architecture"]) == ("linux", "amd64")
            assert config["config"]["User"] == "10001"
            assert config["config"]["Entrypoint"] == parse_dockerfile(IMAGES[name]).entrypoint


def test_make_images_builds_both_with_this_machines_builder(
    built_images: SuiteImages, tmp_path: Path
) -> None:
    """`make images` as an operator runs it: no Docker daemon here, so buildah; the local base
    and the lock's wheels from this host (the images' pip trusts no TLS proxy of this
    network). It works in the suite's store (CONTAINERS_STORAGE_CONF), so the layers are
    those just built and only the tags are new."""
    store = built_images.storage
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "{store.driver}"\n'
        f'graphroot = "{store.root}"\nrunroot = "{store.runroot}"\n'
    )
    proc = subprocess.run(
        ["make", "images", "TAG=make-images", "BASE=local", "WHEELS=local"],
        cwd=REPO_ROOT,
        env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name, container in images.CONTAINERS.items():
        image = f"analysis-pipeline/{container}:make-images"
        assert f"{name}: {image} (linux/amd64)" in proc.stdout
        built = images.image_config(store, image)
        assert built["Entrypoint"] == parse_dockerfile(IMAGES[name]).entrypoint
        assert built == images.image_config(store, built_images.images[name])
