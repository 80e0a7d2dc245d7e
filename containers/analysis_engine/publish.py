"""Publishing: `result.json` (and whatever is written beside it) goes out here, once per run.

`publish_result` is the one place that writes a run's result, so every output a person or the
DAG reads is made from the same scrubbed dict. Two rules hold here:
- the API key never reaches an output, whichever error text or report field carries it;
- a worse result never replaces a better one of the same input: when `result.json` already
  holds a better status for the same recording (or one whose identity is unknown), the earlier
  result stays and the new one is written beside it as `result.<status>-<timestamp>.json`;
- a result that had a report (`complete`, `partial`) is never lost either: when a new one
  replaces it (a purposeful rerun, a fuller retry), it is first copied beside as
  `result.<status>-<its finished time>.json` and the new `result.json` names it in
  `previous_result`. `result.json` is always the current result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis_engine.errors import StorageError
from analysis_engine.report_html.output import write_report
from analysis_engine.storage import Storage

log = logging.getLogger("analysis")

RESULT_NAME = "result.json"
# Higher is better; a rerun may replace a result only with one at least as good.
STATUS_RANK: Mapping[str, int] = {"invalid_input": 0, "failed": 1, "partial": 2, "complete": 3}
# Results worth keeping when replaced: the ones a person could have read a report of.
KEPT_WHEN_REPLACED = frozenset({"complete", "partial"})


@dataclass(frozen=True)
class Published:
    uri: str  # where this run's result went
    kept: str | None = None  # the better earlier result left in place, if any
    written: bool = True


def publish_result(storage: Storage, output_uri: str, result: dict[str, Any], *,
                   secret: str = "") -> Published:  # fmt: skip
    """Write `result` (scrubbed of `secret`) under `output_uri`. Never raises: a write that
    fails is logged and reported as `written=False` (the caller exits 1)."""
    result = scrubbed(result, secret)
    main_uri = storage.join(output_uri, RESULT_NAME)
    uri, kept = main_uri, None
    earlier = _read_earlier(storage, main_uri)
    if earlier is not None and _keeps_earlier(earlier, result):
        uri = storage.join(
            output_uri, f"result.{result['status']}-{_stamp(result.get('finished_at'))}.json"
        )
        kept = main_uri
        log.warning(
            "%s already holds a %s result for this input; keeping it, this %s run's result "
            "goes to %s", main_uri, earlier.get("status"), result["status"], uri,
        )  # fmt: skip
    elif earlier is not None and earlier.get("status") in KEPT_WHEN_REPLACED:
        previous = _keep_beside(storage, output_uri, earlier)
        if previous is None:  # could not keep it: do not lose it either
            return Published(main_uri, None, written=False)
        result = {**result, "previous_result": previous}
    try:
        storage.write_json(uri, result)
    except Exception as exc:
        log.error("could not write %s: %s", uri, exc)
        return Published(uri, kept, written=False)
    if kept is None:  # report.html shows what result.json holds; never fails the publish
        write_report(storage, output_uri, result)
    return Published(uri, kept)


def _keep_beside(storage: Storage, output_uri: str, earlier: dict[str, Any]) -> str | None:
    """Copy the result about to be replaced beside it; its name, or None when that failed."""
    name = f"result.{earlier.get('status')}-{_stamp(earlier.get('finished_at'))}.json"
    try:
        storage.write_json(storage.join(output_uri, name), earlier)
    except Exception as exc:
        log.error("could not keep the earlier result as %s: %s; result.json left as it is",
                  name, exc)  # fmt: skip
        return None
    log.info("the earlier %s result is kept beside as %s", earlier.get("status"), name)
    return name


def _stamp(value: Any) -> str:
    return str(value or "unknown").replace("-", "").replace(":", "")


def _read_earlier(storage: Storage, uri: str) -> dict[str, Any] | None:
    try:
        value = storage.read_json(uri)
    except (StorageError, ValueError) as exc:  # unreadable: nothing worth keeping
        log.warning("ignoring unreadable earlier %s: %s", uri, exc)
        return None
    return value if isinstance(value, dict) else None


def _keeps_earlier(earlier: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The earlier result stays when it is better and may be of the same recording: both
    identities known and different is the only proof that the new run saw another input."""
    if STATUS_RANK.get(str(new.get("status")), 0) >= STATUS_RANK.get(str(earlier.get("status")), 0):
        return False
    old_id = (earlier.get("input") or {}).get("identity")
    new_id = (new.get("input") or {}).get("identity")
    return not (old_id and new_id and old_id != new_id)


def scrubbed(result: dict[str, Any], secret: str) -> dict[str, Any]:
    """The key must never reach an output, whichever error text or report field carries it."""
    if not secret:
        return result
    text = json.dumps(result, ensure_ascii=False, default=str)
    return json.loads(text.replace(secret, "***")) if secret in text else result


def outcome_sentence(result: Mapping[str, Any], published: Published, code: int) -> str:
    coverage = result.get("coverage") or {}
    usage = result.get("usage") or {}
    parts = [f"{result['kind']} {result['analysis_id']} finished {result['status']}"]
    if result.get("error"):
        parts[0] += f" ({result['error']})"
    if coverage:
        parts.append(
            f"{coverage['segments_analysed']}/{coverage['segments_total']} segments analysed, "
            f"{coverage['segments_skipped']} skipped, {coverage['segments_failed']} failed"
        )
    parts.append(f"{usage.get('input_tokens', 0) + usage.get('output_tokens', 0)} tokens")
    where = f"result at {published.uri}" if published.written else f"NO result ({published.uri})"
    if published.kept:
        where += f" (the better earlier result stays at {published.kept})"
    parts.append(f"{where}; exit {code}.")
    return "; ".join(parts)
