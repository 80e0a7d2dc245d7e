"""The suite's real image builds, started once per session in a background thread.

`tests/conftest.py` starts the build as soon as collection selects a test that needs it
(`built_images`), so the minutes of a cold build (base image, two builds) overlap the tests
that run before `tests/test_images_build.py`; the fixture then waits for the result.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from devtools import images


@dataclass(frozen=True)
class SuiteImages:
    images: dict[str, str]  # package name -> image in storage
    storage: images.Storage
    seconds: float  # wall time of the base and both builds (cached steps included)


_lock = threading.Lock()
_future: Future[SuiteImages] | None = None


def start_build() -> Future[SuiteImages]:
    global _future
    with _lock:
        if _future is None:
            _future = Future()
            threading.Thread(
                target=_build, args=(_future,), name="image-build", daemon=True
            ).start()
        return _future


def finish_build(timeout: float = 1800) -> None:
    """Wait for a started build to end (its outcome is the image tests' business). A test
    process that exits with its build thread still running would release the builder's
    file lock while its buildah child goes on writing the shared storage."""
    with _lock:
        future = _future
    if future is not None:
        with contextlib.suppress(Exception):
            future.exception(timeout=timeout)


def _build(future: Future[SuiteImages]) -> None:
    started = time.monotonic()
    try:
        storage = images.suite_storage()
        built = images.suite_images(storage=storage)
        future.set_result(SuiteImages(built, storage, time.monotonic() - started))
    except BaseException as error:  # the fixture re-raises it in the test
        future.set_exception(error)


@contextlib.contextmanager
def local_registry(root: Path) -> Iterator[str]:
    """A registry (Debian's docker-registry, the CNCF distribution server) on a free loopback
    port, storing under `root`; yields its host:port. Plain HTTP: push with --tls-verify=false."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = (root / "registry.log").open("w")
    server = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"registry did not start: {(root / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
