"""State every Airflow component shares: Variables in the metadata database.

Alert grouping and the circuit breaker must agree across workers on several hosts, the
dag-processor (which runs some failure callbacks) and the triggerer. Airflow 3 blocks the
ORM in those processes; what they all may do is read and write Variables through the Task
SDK's supervisor channel (the execution API, i.e. the metadata database). This module talks
to that channel directly, *not* through ``Variable.get``: that one answers from the secrets
cache and the secrets backends (SSM) first, while shared state must be read fresh from the
database every time.

There is no compare-and-set on that channel, so the two primitives here avoid needing one:

- **unique keys** for anything counted: each failure or held launch writes its own key,
  the data encoded in the key name, and a count is a prefix listing (no read-modify-write,
  no lost increment);
- **``claim``** for "exactly one process posts this message": first-writer check, write a
  token, pause, read back. Two claimers both read "free" and both write; the later write
  wins and only its writer reads its own token back. A duplicate needs one writer's read
  and write to be further apart than the pause (seconds), which a single API round trip
  is not. No lock is ever held while anything else (HTTP) happens.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Protocol

log = logging.getLogger(__name__)

CLAIM_SETTLE_SECONDS = 1.0
PAGE = 1000


class SharedStore(Protocol):
    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str) -> list[str]: ...


class VariableStore:
    """Variables in the metadata database, through the supervisor's execution-API channel."""

    def __init__(self, comms: Any) -> None:
        self.comms = comms

    def get(self, key: str) -> str | None:
        from airflow.sdk.execution_time.comms import GetVariable, VariableResult

        answer = self.comms.send(GetVariable(key=key))
        return answer.value if isinstance(answer, VariableResult) else None

    def put(self, key: str, value: str) -> None:
        from airflow.sdk.execution_time.comms import ErrorResponse, PutVariable

        answer = self.comms.send(PutVariable(key=key, value=value, description=_DESCRIPTION))
        if isinstance(answer, ErrorResponse):
            raise RuntimeError(f"could not write Variable {key}: {answer.error}")

    def delete(self, key: str) -> None:
        from airflow.sdk.execution_time.comms import DeleteVariable

        self.comms.send(DeleteVariable(key=key))

    def keys(self, prefix: str) -> list[str]:
        from airflow.sdk.execution_time.comms import GetVariableKeys, VariableKeysResult

        found: list[str] = []
        while True:
            answer = self.comms.send(GetVariableKeys(prefix=prefix, limit=PAGE, offset=len(found)))
            if not isinstance(answer, VariableKeysResult):
                raise RuntimeError(f"could not list Variables under {prefix}")
            found.extend(answer.keys)
            if len(answer.keys) < PAGE:
                return found


_DESCRIPTION = "analysis_pipeline shared state (alert grouping / Gemini breaker); safe to delete"


class MemoryStore:
    """One process only: unit tests, and the fallback outside any Airflow component."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self.lock:
            return self.data.get(key)

    def put(self, key: str, value: str) -> None:
        with self.lock:
            self.data[key] = value

    def delete(self, key: str) -> None:
        with self.lock:
            self.data.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        with self.lock:
            return sorted(k for k in self.data if k.startswith(prefix))


_FALLBACK = MemoryStore()


def airflow_store() -> VariableStore | None:
    """The metadata-database store inside any Airflow component; None outside Airflow, and
    on Airflow 3.2, whose supervisor channel cannot list Variables (``compat``)."""
    from analysis_pipeline import compat

    if not compat.VARIABLE_KEYS:
        return None
    try:
        from airflow.sdk.execution_time import task_runner

        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    except Exception:
        comms = None
    return VariableStore(comms) if comms is not None else None


def default_store() -> SharedStore:
    """``airflow_store()``, else a process-local one (grouping then works per process)."""
    store = airflow_store()
    if store is None:
        log.warning(
            "No Airflow supervisor channel that lists Variables (outside Airflow, or Airflow "
            "3.2): alert grouping and the breaker are local to this process"
        )
        return _FALLBACK
    return store


def new_token() -> str:
    return uuid.uuid4().hex


def claim(store: SharedStore, key: str, token: str, *, settle: float | None = None) -> bool:
    """True for exactly one of the processes claiming ``key`` (see the module docstring)."""
    current = store.get(key)
    if current is not None:
        return current == token
    store.put(key, token)
    time.sleep(CLAIM_SETTLE_SECONDS if settle is None else settle)
    return store.get(key) == token
