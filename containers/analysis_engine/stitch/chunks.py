"""Chunk inputs (pure): names → index and recorder, natural order, duplicates."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO


@dataclass(frozen=True)
class Chunk:
    """One uploaded chunk: a name (for ordering and reports) and a way to stream its bytes."""

    name: str
    opener: Callable[[], BinaryIO] = field(repr=False)
    size: int | None = None
    # When it was uploaded (POSIX seconds; a file's mtime): dates a recorder restart's pause.
    uploaded_at: float | None = None

    @classmethod
    def from_path(cls, path: Path) -> Chunk:
        st = path.stat()
        return cls(path.name, lambda: path.open("rb"), st.st_size, st.st_mtime)


_RETRY_SUFFIX = re.compile(r"([-_.]?(retry|dup|copy|again|re)\d*)+$", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")


def chunk_index(name: str) -> int | None:
    """`9.webm`, `9-retry.webm`, `chunk-0009.webm`, `rec2_9_retry2.webm` → 9; no digits → None."""
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    numbers = _DIGITS.findall(_RETRY_SUFFIX.sub("", stem))
    return int(numbers[-1]) if numbers else None


def natural_key(name: str) -> tuple[Any, ...]:
    parts = _DIGITS.split(name)
    numbers = _DIGITS.findall(name)
    key: list[Any] = []
    for i, text in enumerate(parts):
        key.append(text)
        if i < len(numbers):
            key.append(int(numbers[i]))
    return tuple(key)


def recorder_key(name: str) -> str:
    """The name without its index (and retry suffix): `rec2_0009-retry.webm` → `rec2_`."""
    stem = _RETRY_SUFFIX.sub("", name.rsplit("/", 1)[-1].split(".", 1)[0])
    numbers = list(_DIGITS.finditer(stem))
    if not numbers:
        return stem
    return stem[: numbers[-1].start()] + stem[numbers[-1].end() :]


def recorder_groups(names: Iterable[str]) -> dict[str, int] | None:
    """{recorder key: rank} when the names identify several recorders, else None.

    `rec1_0, rec1_1, rec2_0, rec2_1` are two recorders (each numbers its own chunks from 0):
    a key shared by chunks of different indices is a recorder's id. `c9f2_0, 1ab7_1` are one
    recorder whose uploader puts a random tag on every chunk: no key has two indices, so the
    tags mean nothing and only the index orders them. Recorders rank in natural name order.
    """
    indices: dict[str, set[int]] = {}
    for name in names:
        index = chunk_index(name)
        if index is not None:
            indices.setdefault(recorder_key(name), set()).add(index)
    if len(indices) < 2 or all(len(found) < 2 for found in indices.values()):
        return None
    return {key: rank for rank, key in enumerate(sorted(indices, key=natural_key))}


def order_chunks(chunks: Iterable[Chunk]) -> tuple[list[tuple[int | None, Chunk]], list[str]]:
    """Order by recorder (when names identify several, see `recorder_groups`), then by the
    numeric index (never the full name: a per-chunk tag in front must not reorder them); one
    chunk per (recorder, index): the largest copy. Returns (kept, duplicates)."""
    items = list(chunks)
    groups = recorder_groups(c.name for c in items)

    def slot(chunk: Chunk) -> tuple[int, int | None]:
        rank = groups.get(recorder_key(chunk.name), 0) if groups else 0
        return rank, chunk_index(chunk.name)

    ordered = sorted(
        items,
        key=lambda c: (
            chunk_index(c.name) is None,
            slot(c)[0],
            slot(c)[1] or 0,
            natural_key(c.name),
        ),
    )
    kept: list[tuple[int | None, Chunk]] = []
    duplicates: list[str] = []
    by_slot: dict[tuple[int, int], int] = {}
    for chunk in ordered:
        rank, index = slot(chunk)
        if index is None or (rank, index) not in by_slot:
            if index is not None:
                by_slot[(rank, index)] = len(kept)
            kept.append((index, chunk))
            continue
        at = by_slot[(rank, index)]
        current = kept[at][1]
        # A retry is a full re-upload; the original may be the truncated one.
        if (chunk.size or 0) > (current.size or 0):
            duplicates.append(current.name)
            kept[at] = (index, chunk)
        else:
            duplicates.append(chunk.name)
    return kept, duplicates
