"""The suite's real image builds, started once per session in a background thread.

`tests/conftest.py` starts the build as soon as collection selects a test that needs it
(`built_images`), so the minutes of a cold build (base image, two builds) overlap the tests
that run before `tests/test_images_build.py`; the fixture then waits for the result.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

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


def _build(future: Future[SuiteImages]) -> None:
    started = time.monotonic()
    try:
        storage = images.suite_storage()
        built = images.suite_images(storage=storage)
        future.set_result(SuiteImages(built, storage, time.monotonic() - started))
    except BaseException as error:  # the fixture re-raises it in the test
        future.set_exception(error)
