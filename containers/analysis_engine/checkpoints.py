"""Per-segment MAP checkpoints stored next to the result (adapter over `Storage`)."""

from __future__ import annotations

import logging
from typing import Any

from analysis_engine.errors import StorageError
from analysis_engine.storage import Storage

log = logging.getLogger(__name__)


class StorageCheckpoints:
    """`OUTPUT_URI/checkpoints/<key>`; each write is atomic, so a kill never leaves half a file."""

    def __init__(self, storage: Storage, output_uri: str) -> None:
        self._storage = storage
        self._base = storage.join(output_uri, "checkpoints")

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            value = self._storage.read_json(self._storage.join(self._base, key))
        except (StorageError, ValueError) as exc:
            # An unreadable checkpoint only costs a re-analysis; never fail the run for it.
            log.warning("ignoring unreadable checkpoint %s: %s", key, exc)
            return None
        return value if isinstance(value, dict) else None

    def save(self, key: str, payload: dict[str, Any]) -> None:
        # Tagged so the results bucket expires checkpoints long before results.
        self._storage.write_json(
            self._storage.join(self._base, key), payload, retention="checkpoint"
        )
