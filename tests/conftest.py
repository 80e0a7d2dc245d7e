"""Shared pytest fixtures (several helpers add fixtures here; append, never rewrite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_media(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`sample_media("name.mp4", duration=20, idle=[(5, 15)], ...)` -> a generated screenshare
    (devtools.media.make_screenshare options), made once per session per name."""
    from devtools.media import make_screenshare

    root = tmp_path_factory.mktemp("sample-media")
    made: dict[str, Path] = {}

    def make(name: str, **options: object) -> Path:
        if name not in made:
            made[name] = make_screenshare(root / name, **options)
        return made[name]

    return make
