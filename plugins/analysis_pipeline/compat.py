"""What differs between the supported Airflow lines (3.2.x and 3.3.x), found by feature.

- ``RETRY_POLICY``: Airflow 3.3's ``retry_policy`` (per-exception retry delays). On 3.2 the
  launch falls back to one exponential backoff from the crash delay; the long wait after a
  quota storm then comes from the Gemini breaker, which holds launches until it closes.
- ``VARIABLE_KEYS``: listing Variables by prefix over the supervisor channel (3.3). Without
  it the shared state that counts alerts and breaker trips across hosts cannot be kept, so
  it is kept per process (``shared_state.default_store`` logs that once).
"""

from __future__ import annotations

import importlib.util


def _has(module: str, name: str) -> bool:
    if importlib.util.find_spec(module) is None:
        return False
    return hasattr(importlib.import_module(module), name)


RETRY_POLICY = _has("airflow.sdk.definitions.retry_policy", "RetryPolicy")
VARIABLE_KEYS = _has("airflow.sdk.execution_time.comms", "GetVariableKeys")
