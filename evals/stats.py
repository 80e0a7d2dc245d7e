"""Paired bootstrap over cases: is the candidate worse than the baseline beyond a tolerance?

Both sides ran on the same cases, so the comparison is paired: each resample draws case
indices with replacement and computes the metric on both sides from those same cases. The
gate is a non-inferiority test: it passes a metric only when the candidate is not worse
than the baseline by more than the tolerance, at 95 % one-sided confidence (the 95th
percentile of "how much worse" over the resamples is within the tolerance) and in the
observed value too. Identical outputs give a zero-width interval and pass; one case that
flips gives a positive upper bound and fails a zero-tolerance count. Deterministic (seeded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Aggregate = Callable[[Sequence[dict[str, Any]]], float | None]
RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Comparison:
    candidate: float | None
    baseline: float | None
    worse: float | None  # observed: >0 means the candidate is worse
    ci_low: float | None  # bootstrap interval of `worse` (two-sided 90 %, so the upper
    ci_high: float | None  # bound is the one-sided 95 % bound the gate uses)
    tolerance: float
    failed: bool

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "candidate": r(self.candidate),
            "baseline": r(self.baseline),
            "worse": r(self.worse),
            "ci": [r(self.ci_low), r(self.ci_high)],
            "tolerance": self.tolerance,
            "failed": self.failed,
        }


def compare(
    candidate: Sequence[dict[str, Any]],
    baseline: Sequence[dict[str, Any]],
    aggregate: Aggregate,
    *,
    higher_is_better: bool,
    tolerance: float,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Comparison:
    """Compare one metric; `candidate[i]` and `baseline[i]` are case i's contributions."""
    if len(candidate) != len(baseline):
        raise ValueError("paired comparison needs the same cases on both sides")
    sign = 1.0 if higher_is_better else -1.0

    def worse_of(c: float | None, b: float | None) -> float | None:
        return None if c is None or b is None else sign * (b - c)

    cand, base = aggregate(candidate), aggregate(baseline)
    observed = worse_of(cand, base)
    n = len(candidate)
    draws: list[float] = []
    if n and observed is not None:
        rng = np.random.default_rng(seed)
        for _ in range(resamples):
            idx = rng.integers(0, n, n)
            w = worse_of(
                aggregate([candidate[i] for i in idx]), aggregate([baseline[i] for i in idx])
            )
            if w is not None:
                draws.append(w)
    low = high = None
    if draws:
        low = float(np.percentile(draws, 100 * (1 - LEVEL)))
        high = float(np.percentile(draws, 100 * LEVEL))
    # A metric the baseline measures but the candidate cannot (e.g. no prediction left to
    # take a precision of) is worse too.
    failed = (cand is None and base is not None) or (
        observed is not None
        and (observed > tolerance + 1e-9 or (high is not None and high > tolerance + 1e-9))
    )
    return Comparison(cand, base, observed, low, high, tolerance, failed)
