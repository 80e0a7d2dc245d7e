"""`GeminiClient`: validated structured answers with retries, deadlines and budgeting.

- **Deadlines.** Every call runs under `asyncio.wait_for(..., GEMINI_TIMEOUT_SECONDS)`; a
  hung call is abandoned and counts as a failed attempt.
- **Budget.** Each generate attempt first waits for a lease from `Budget` (RPM/TPM of the
  call's model: this container's share, or the fleet's with a shared `GEMINI_BUDGET_URI`),
  settles it with the real input tokens, and a 429 pauses every caller of that model that
  shares the budget, not just the one that got it.
- **Cost.** Usage counts every attempt that reached the model, failed ones included.
- **Refusals.** A permanent refusal (bad key, permission, unknown model, spent daily quota,
  a prompt too large or blocked) is not retried, and one that holds for the key or the
  model stops later calls before they are sent (see `failures` and `retry`).
- **Thinking.** Thinking models get a fixed thinking budget on top of the answer's room, so
  reasoning cannot use up `max_output_tokens` and end in MAX_TOKENS with no answer.

The API key is never logged: log lines carry model, attempt, reason and wait only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pydantic
from google import genai
from google.genai import types

from analysis_engine.budget import Budget, open_budget
from analysis_engine.gemini.failures import AttemptFailed, short
from analysis_engine.gemini.files import INLINE_LIMIT_BYTES, FileStore
from analysis_engine.gemini.request import MEDIA_RESOLUTIONS, contents, generation_config
from analysis_engine.gemini.response import token_counts, validated
from analysis_engine.gemini.retry import Retrier, RetryPolicy, Sleep, call_sdk
from analysis_engine.gemini.transport import sdk_client
from analysis_engine.model_specs import thinking_budget
from analysis_engine.models import MediaHandle, ModelReply
from analysis_engine.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T", bound=pydantic.BaseModel)
Clock = Callable[[], float]

MAX_OUTPUT_TOKENS_CEILING = 65_536  # the models' output limit, thinking included
# Tokens a thinking model may reason for before it answers (GEMINI_THINKING_BUDGET).
DEFAULT_THINKING_BUDGET = 1024


@dataclass
class ModelUsage:
    """What one model cost this client, failed attempts included."""

    calls: int = 0  # attempts that reached the model (any outcome)
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    rate_limited: int = 0  # attempts the service refused for quota (429 RESOURCE_EXHAUSTED)
    budget_wait_s: float = 0.0  # time the attempts spent waiting for the budget to admit them


class GeminiClient:
    """Upload media, ask for validated structured answers, clean up. See the module doc."""

    def __init__(
        self,
        sdk: genai.Client,
        *,
        budget: Budget,
        timeout_s: float,
        max_attempts: int,
        inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        max_retry_delay_s: float = 90.0,
        thinking_budget: int = DEFAULT_THINKING_BUDGET,
        poll_interval_s: float = 1.0,
        processing_deadline_s: float = 600.0,
    ) -> None:
        """`sleep` and `clock` must be a matching pair, and the budget's too (see from_settings)."""
        self._sdk = sdk
        self._budget = budget
        self._timeout_s = timeout_s
        self._thinking_budget = thinking_budget
        self._policy = RetryPolicy(
            max_attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            max_retry_delay_s=max_retry_delay_s,
        )
        self._retrier = Retrier(self._policy, sleep=sleep, rng=rng or random.Random())
        self._files = FileStore(
            sdk,
            self._retrier,
            timeout_s=timeout_s,
            sleep=sleep,
            clock=clock,
            inline_limit_bytes=inline_limit_bytes,
            poll_interval_s=poll_interval_s,
            processing_deadline_s=processing_deadline_s,
        )
        self._usage: dict[str, ModelUsage] = {}
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        kind: str | None = None,
    ) -> GeminiClient:
        """The production wiring; the keyword arguments exist for tests and demos.

        `kind` (the container kind's name) sets the budget queue's priority. An injected
        `clock` drives the budget too; by default the budget keeps wall time (shared by
        every container of the fleet) and the client monotonic time.
        """
        sdk = sdk_client(settings)
        budget = open_budget(settings, kind=kind, clock=clock or time.time, sleep=sleep)
        return cls(
            sdk,
            budget=budget,
            timeout_s=settings.gemini_timeout_seconds,
            max_attempts=settings.gemini_max_attempts,
            inline_limit_bytes=inline_limit_bytes,
            sleep=sleep,
            clock=clock or time.monotonic,
            rng=rng,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            max_retry_delay_s=settings.gemini_max_retry_delay_seconds,
            thinking_budget=settings.gemini_thinking_budget,
        )

    @property
    def budget(self) -> Budget:
        return self._budget

    def usage(self) -> dict[str, ModelUsage]:
        """Per-model totals so far (a copy), including attempts that failed."""
        return {model: ModelUsage(**vars(u)) for model, u in self._usage.items()}

    # -- files (see files.py) ----------------------------------------------------------

    async def upload(self, path: Path, *, mime_type: str) -> MediaHandle:
        """Make `path` readable by the model: inline when small, else Files API until ACTIVE."""
        return await self._files.upload(path, mime_type=mime_type)

    async def delete(self, handle: MediaHandle) -> None:
        """Delete an uploaded file. Best effort: never raises (aclose() retries leftovers)."""
        await self._files.delete(handle)

    async def aclose(self) -> None:
        """Delete every file this client uploaded and still holds, then close the SDK."""
        if self._closed:
            return
        self._closed = True
        await self._files.delete_leftovers()
        try:
            await self._sdk.aio.aclose()
        except Exception as exc:  # closing must not mask the run's outcome
            log.warning("closing the Gemini client failed: %s", short(exc))
        await self._budget.aclose()

    async def __aenter__(self) -> GeminiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- generation --------------------------------------------------------------------

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        schema: type[T],
        media: MediaHandle | None = None,
        estimated_input_tokens: int,
        media_resolution: str = "default",
        max_output_tokens: int = 8192,
        finishing: bool = False,
    ) -> ModelReply[T]:
        """One structured answer validated against `schema`, with retries and budgeting.
        `finishing`: the analysis' closing call (REDUCE), queued ahead of MAP calls.

        Tokens in the reply are what the whole call cost: every attempt that reached the
        model is summed (a truncated or malformed answer is billed too).
        Raises ModelCallError(reason, attempts=n, retryable=...) when no attempt succeeds.
        """
        if media_resolution not in MEDIA_RESOLUTIONS:
            raise ValueError(f"media_resolution must be one of {sorted(MEDIA_RESOLUTIONS)}")
        request = contents(prompt, media)
        spent = ModelUsage()
        limit = [max_output_tokens]  # the answer's room, raised after a MAX_TOKENS truncation
        thinking = thinking_budget(model, self._thinking_budget)
        room_ceiling = MAX_OUTPUT_TOKENS_CEILING - (thinking or 0)
        limit[0] = min(limit[0], room_ceiling)

        async def attempt(_: int) -> T:
            config = generation_config(
                schema,
                answer_tokens=limit[0],
                media_resolution=media_resolution,
                thinking_budget=thinking,
            )
            try:
                return await self._generate_once(
                    model, request, config, schema, estimated_input_tokens, spent, finishing
                )
            except AttemptFailed as failure:
                if "MAX_TOKENS" in failure.reason:
                    limit[0] = min(limit[0] * 2, room_ceiling)
                raise

        parsed, attempts = await self._retrier.run(f"generate {model}", attempt, model=model)
        return ModelReply(
            parsed=parsed,
            model=model,
            input_tokens=spent.input_tokens,
            output_tokens=spent.output_tokens,
            attempts=attempts,
        )

    async def _generate_once(
        self,
        model: str,
        request: list[types.Content],
        config: types.GenerateContentConfig,
        schema: type[T],
        estimated_input_tokens: int,
        spent: ModelUsage,
        finishing: bool,
    ) -> T:
        lease = await self._budget.acquire(estimated_input_tokens, model=model, finishing=finishing)
        usage = self._usage.setdefault(model, ModelUsage())
        usage.calls += 1
        usage.budget_wait_s += lease.waited_s
        spent.calls += 1
        try:
            response = await call_sdk(
                self._sdk.aio.models.generate_content(model=model, contents=request, config=config),
                self._timeout_s,
            )
        except AttemptFailed as failure:
            # The lease keeps its estimate (the budget never un-counts), so a failed attempt
            # cannot make room for an overspend.
            usage.failed_calls += 1
            if failure.quota or failure.daily:
                usage.rate_limited += 1  # a 429, for the window's quota or the day's
            if failure.daily:
                # Spent until tomorrow: fail this model's calls fleet-wide, keep the ceiling.
                await self._budget.exhausted(model, failure.reason[:300])
            elif failure.quota:
                # The project quota is hot: hold every caller of this model that shares the
                # budget (the whole fleet with a shared store), for the server's retryDelay.
                delay = self._policy.honoured(failure.retry_after_s)
                await self._budget.pause(
                    model,
                    delay or self._policy.base_delay_s,
                    refused=lease,
                    reason=failure.reason[:200],
                )
            raise
        except asyncio.CancelledError:  # cut off by a stop or the run deadline: no answer used
            usage.failed_calls += 1
            raise
        input_tokens, output_tokens = token_counts(response)
        await lease.settle(input_tokens if response.usage_metadata else estimated_input_tokens)
        for tally in (usage, spent):
            tally.input_tokens += input_tokens
            tally.output_tokens += output_tokens
        try:
            return validated(response, schema, config.max_output_tokens or 0)
        except AttemptFailed:
            usage.failed_calls += 1
            raise
