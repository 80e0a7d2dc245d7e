"""The Files API side: media above the inline limit is uploaded (resumable), polled until
`ACTIVE`, and deleted after use; whatever is still held is deleted on close. Smaller media
is sent inline (no remote copy to clean up)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from google import genai
from google.genai import types

from analysis_engine.errors import ModelCallError
from analysis_engine.gemini.failures import AttemptFailed, short
from analysis_engine.gemini.retry import Retrier, Sleep, call_sdk
from analysis_engine.models import MediaHandle

log = logging.getLogger(__name__)

# generateContent requests are limited to 20 MB, and inline bytes travel base64-encoded
# (4/3 larger) next to the prompt: files up to 14 MB are safe to inline, bigger ones go
# through the Files API.
INLINE_LIMIT_BYTES = 14 * 1024 * 1024
# Uploads get the call deadline plus time for the bytes at a pessimistic 1 MB/s.
UPLOAD_BYTES_PER_SECOND = 1_000_000


class FileStore:
    """Uploads and deletes through one SDK client; remembers what it still holds."""

    def __init__(
        self,
        sdk: genai.Client,
        retrier: Retrier,
        *,
        timeout_s: float,
        sleep: Sleep,
        clock: Callable[[], float],
        inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        poll_interval_s: float = 1.0,
        processing_deadline_s: float = 600.0,
    ) -> None:
        self._sdk = sdk
        self._retrier = retrier
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock
        self._inline_limit = inline_limit_bytes
        self._poll_interval_s = poll_interval_s
        self._processing_deadline_s = processing_deadline_s
        self._live: set[str] = set()

    async def upload(self, path: Path, *, mime_type: str) -> MediaHandle:
        """Make `path` readable by the model: inline when small, else Files API until ACTIVE."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ModelCallError(
                f"cannot read {path.name}: {exc}", attempts=0, retryable=False
            ) from exc
        if size <= self._inline_limit:
            data = await asyncio.to_thread(path.read_bytes)
            return MediaHandle(mime_type=mime_type, data=data)
        deadline_s = self._timeout_s + size / UPLOAD_BYTES_PER_SECOND
        config = types.UploadFileConfig(mime_type=mime_type, display_name=path.name)

        async def attempt(_: int) -> types.File:
            return await call_sdk(self._sdk.aio.files.upload(file=path, config=config), deadline_s)

        uploaded, attempts = await self._retrier.run(f"upload {path.name}", attempt)
        if not uploaded.name:
            raise ModelCallError(f"upload {path.name}: no file name returned", attempts=attempts)
        self._live.add(uploaded.name)
        handle = MediaHandle(
            mime_type=uploaded.mime_type or mime_type, uri=uploaded.uri, name=uploaded.name
        )
        try:
            active = await self._wait_active(
                uploaded, label=f"upload {path.name}", attempts=attempts
            )
        except BaseException:
            await self.delete(handle)
            raise
        return MediaHandle(
            mime_type=handle.mime_type, uri=active.uri or handle.uri, name=handle.name
        )

    async def _wait_active(self, file: types.File, *, label: str, attempts: int) -> types.File:
        name = file.name or ""
        deadline = self._clock() + self._processing_deadline_s
        interval = self._poll_interval_s
        while file.state != types.FileState.ACTIVE:
            if file.state == types.FileState.FAILED:
                detail = file.error.message if file.error and file.error.message else "no detail"
                raise ModelCallError(
                    f"{label}: file processing FAILED ({detail})",
                    attempts=attempts,
                    retryable=False,
                )
            if self._clock() >= deadline:
                raise ModelCallError(
                    f"{label}: file not ACTIVE after {self._processing_deadline_s:g}s "
                    f"(state {file.state.value if file.state else 'unknown'})",
                    attempts=attempts,
                )
            await self._sleep(interval)
            interval = min(interval * 1.5, 10.0)

            async def attempt(_: int) -> types.File:
                return await call_sdk(self._sdk.aio.files.get(name=name), self._timeout_s)

            file, _ = await self._retrier.run(f"{label} (files.get)", attempt)
        return file

    async def delete(self, handle: MediaHandle) -> None:
        """Delete an uploaded file. Best effort: never raises (close() retries leftovers)."""
        if not handle.name:
            return  # inline media: nothing stored remotely
        try:
            await call_sdk(self._sdk.aio.files.delete(name=handle.name), self._timeout_s)
        except AttemptFailed as failure:
            if failure.http_code in (403, 404):
                self._live.discard(handle.name)  # already gone (or expired)
            log.warning("could not delete %s: %s", handle.name, failure.reason)
        except Exception as exc:  # best effort by contract
            log.warning("could not delete %s: %s", handle.name, short(exc))
        else:
            self._live.discard(handle.name)

    async def delete_leftovers(self) -> None:
        """Delete every file uploaded here and not deleted yet (the safety net on close)."""
        leftovers = sorted(self._live)
        if leftovers:
            log.info("deleting %d uploaded file(s) left behind", len(leftovers))
            await asyncio.gather(
                *(self.delete(MediaHandle(mime_type="", name=name)) for name in leftovers)
            )
