"""Estimated USD per model from a price table (pure).

The default table is Google's published list prices for the Gemini Developer API, paid tier,
standard (not batch) processing, as of `PRICES_AS_OF`; Gemini 2.5 Pro at its price for
prompts up to 200k tokens (our calls stay far below that). Video input is billed at the
text/image/video input rate; audio-only input costs more and is not separated here, so the
estimate is a floor for recordings with sound. Operators override or extend the table with
`GEMINI_PRICES` (JSON, USD per million tokens):

    GEMINI_PRICES='{"gemini-2.5-flash": {"input": 0.30, "output": 2.50}}'

A model missing from the table has no estimate (`estimated_usd: null`), never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis_engine.errors import InvalidInputError

PRICES_AS_OF = "2025-07-01"
PRICE_SOURCE = "Gemini API list prices, paid tier (ai.google.dev/gemini-api/docs/pricing)"
ENV_VAR = "GEMINI_PRICES"


@dataclass(frozen=True)
class Price:
    input_per_million: float  # USD per million input (prompt) tokens
    output_per_million: float  # USD per million output tokens, thinking included

    def usd(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


DEFAULT_PRICES: Mapping[str, Price] = {
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    "gemini-2.5-pro": Price(1.25, 10.00),
}


def price_for(model: str, table: Mapping[str, Price]) -> Price | None:
    """Exact name first, else the longest table name the model's name starts with (pinned
    versions like `gemini-2.5-flash-001`); `-lite` never falls back to its bigger sibling
    because the longer name wins."""
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


def priced(usage: Mapping[str, Any], table: Mapping[str, Price] | None = None) -> dict[str, Any]:
    """`usage` (totals + per_model tokens) with `estimated_usd` per model and in total.
    Every billed attempt counts: the tokens are what the client was charged for."""
    table = DEFAULT_PRICES if table is None else table
    per_model: dict[str, Any] = {}
    total: float | None = 0.0
    for name, model in (usage.get("per_model") or {}).items():
        price = price_for(name, table)
        usd = (
            round(
                price.usd(int(model.get("input_tokens", 0)), int(model.get("output_tokens", 0))), 6
            )
            if price is not None
            else None
        )
        per_model[name] = {**model, "estimated_usd": usd}
        total = None if usd is None or total is None else total + usd
    return {
        **usage,
        "per_model": per_model,
        "estimated_usd": None if total is None else round(total, 6),
        "pricing": {
            "as_of": PRICES_AS_OF,
            "source": PRICE_SOURCE
            + ("" if table is DEFAULT_PRICES else f", with {ENV_VAR} overrides"),
        },
    }


def prices_from_env(env: Mapping[str, str]) -> Mapping[str, Price]:
    """The default table, with `GEMINI_PRICES` entries added or replacing defaults."""
    raw = (env.get(ENV_VAR) or "").strip()
    if not raw:
        return DEFAULT_PRICES
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(ENV_VAR, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(ENV_VAR, "must be a JSON object of model -> prices")
    table = dict(DEFAULT_PRICES)
    for model, entry in data.items():
        values = entry if isinstance(entry, dict) else {}
        rates = [values.get("input"), values.get("output")]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                   for v in rates):  # fmt: skip
            raise InvalidInputError(
                ENV_VAR,
                f"{model!r} needs non-negative numbers 'input' and 'output' "
                "(USD per million tokens)",
            )
        table[str(model)] = Price(float(rates[0]), float(rates[1]))
    return table
