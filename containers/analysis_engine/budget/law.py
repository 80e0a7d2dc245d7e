"""The control law after a 429, pure: whose refusal it was, and what the ceiling becomes.

The service answers 429 for reasons that are ours to fix (the project quota is smaller than
the budget: another client on the key, a budget set too high) and reasons that are not (its
own overload, another client's burst in the same minute, a budget store that lost its
keys). Only the window we charged when the service said "full" tells them apart:

- **Full window** (`window_tokens >= FULL x ceiling`): we held what we believe the quota is,
  and the service disagreed. The ceiling drops to `BACKOFF x` what the service admitted
  (multiplicative decrease, as TCP's AIMD): to no less than 0.81 of where it was.
- **A meaningful share, not full** (`SHARE x ceiling <= window < FULL x ceiling`): the quota
  may be below the ceiling, or the refusal was a fluke. The first such 429 only marks the
  level (`suspect`) and pauses; a call answered after being admitted into `CLEARS x` that
  much clears the mark (the quota is above it; the margin is for the budget's window being
  a little longer than the service's); a second 429 in a later episode of the same run
  (before a quiet window) with the mark still set confirms it: the ceiling drops to
  `BACKOFF x` the larger of the two levels.

"The window" is what the service held when it refused: the calls admitted before the
refused one and still counted (calls it refused as well are not; calls sent after it had
not reached the service yet).
- **Nearly empty** (`window < SHARE x ceiling`): not about our share. The pause (the
  service's retryDelay) is honoured and the ceiling kept.

An *episode* is the 429s that arrive within one pause (calls sent before the pause was
known): they count once. A *run* ends with a whole window free of 429s.

Recovery is additive: `STEP x` the configured limit per whole quiet window, counted from the
end of the last pause, so the ceiling is back at the limit within `recovery_windows(c)`
quiet windows of falling to `c` x the limit: 4 after one full-window 429, 16 after the
deepest confirmed decrease (to 0.225), 19 from the floor. A daily-quota 429 is not handled
here at all: waiting minutes will not refill a quota that resets once a day (see
`Budget.exhausted`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

FULL = 0.9  # of the ceiling in our window: we held all we thought we had
SHARE = 0.25  # of the ceiling: below it the refusal was not about our share
BACKOFF = 0.9  # x the tokens the service admitted when it said "full"
CLEARS = 1.1  # x a suspected level: a call answered above it clears the suspicion
STEP = 0.05  # x the limit, per quiet window
FLOOR = 0.05  # x the limit: never so low that nothing but oversized calls fit
WARN_STREAK = 3  # 429 episodes in a run not about our share: say the quota looks smaller

Verdict = Literal["full window", "confirmed", "suspect", "not ours"]


@dataclass(frozen=True)
class Ceiling:
    """The learnt ceiling of one model, as the store keeps it."""

    tokens: float  # the level a 429 set
    quiet_since: float  # recovery counts whole quiet windows from here (a pause's end)
    streak: int = 0  # 429 episodes in this run that were not about our share
    episode_until: float = 0.0  # the end of the latest episode's pause
    suspect: float = 0.0  # the window a first mid-level 429 saw in this run (0: none)


def current(ceiling: Ceiling | None, *, limit: float, now: float, window_s: float) -> float:
    """Tokens per window admission stays under now: the learnt level plus one step per
    whole quiet window since `quiet_since`, never above the configured limit."""
    if ceiling is None:
        return float(limit)
    quiet_windows = math.floor(max(0.0, now - ceiling.quiet_since) / window_s)
    return min(float(limit), ceiling.tokens + STEP * limit * quiet_windows)


def after_429(
    ceiling: Ceiling | None,
    *,
    window_tokens: float,
    limit: float,
    now: float,
    pause_until: float,
    window_s: float,
) -> tuple[Ceiling, Verdict]:
    """The ceiling after a 429 that arrived at `now` with `window_tokens` in our window
    (the refused call no longer counted), holding every caller until `pause_until`."""
    level = current(ceiling, limit=limit, now=now, window_s=window_s)
    previous = ceiling or Ceiling(float(limit), now)
    in_run = now < previous.quiet_since + window_s  # no quiet window since the last 429
    new_episode = now >= previous.episode_until
    streak = previous.streak if in_run else 0
    suspect = previous.suspect if in_run else 0.0
    base = Ceiling(
        level,
        max(pause_until, previous.quiet_since),
        streak,
        max(pause_until, previous.episode_until),
        suspect,
    )
    if window_tokens >= FULL * level:
        return _lowered(base, window_tokens, limit), "full window"
    if window_tokens >= SHARE * level:
        if suspect and new_episode:
            return _lowered(base, max(window_tokens, suspect), limit), "confirmed"
        return Ceiling(base.tokens, base.quiet_since, streak, base.episode_until,
                       max(suspect, window_tokens)), "suspect"  # fmt: skip
    return Ceiling(base.tokens, base.quiet_since, streak + (1 if new_episode else 0),
                   base.episode_until, suspect), "not ours"  # fmt: skip


def _lowered(base: Ceiling, admitted: float, limit: float) -> Ceiling:
    tokens = max(FLOOR * limit, min(base.tokens, BACKOFF * admitted))
    return Ceiling(tokens, base.quiet_since, 0, base.episode_until, 0.0)


def recovery_windows(fraction: float) -> int:
    """Quiet windows from `fraction` x the limit back to the limit (the stated bound)."""
    return max(0, math.ceil(round((1.0 - fraction) / STEP, 9)))
