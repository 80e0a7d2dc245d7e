"""The engine's exception types. Each maps to one exit code and one `result.json` status."""

from __future__ import annotations


class AnalysisError(Exception):
    """Base class for every error the engine raises on purpose."""


class InvalidInputError(AnalysisError):
    """The input cannot be analysed; retrying will not help (exit 2, `invalid_input`).

    The message always names the offending field (env variable, URI or media property)
    and the reason, e.g. ``INPUT_URI: object s3://b/k is empty (0 bytes)``.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class MediaError(AnalysisError):
    """An ffmpeg/ffprobe command failed. Carries the argv and the tail of stderr."""

    def __init__(self, message: str, *, command: list[str], stderr_tail: str = "") -> None:
        self.command = command
        self.stderr_tail = stderr_tail
        last_line = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else ""
        super().__init__(f"{message}: {last_line}" if last_line else message)


class StorageError(AnalysisError):
    """Reading or writing s3:// or file:// failed for a reason other than bad input."""


class ModelCallError(AnalysisError):
    """A model call failed after all attempts (or failed permanently on the first)."""

    def __init__(self, reason: str, *, attempts: int, retryable: bool = True) -> None:
        self.reason = reason
        self.attempts = attempts
        self.retryable = retryable
        super().__init__(f"{reason} (after {attempts} attempt{'s' if attempts != 1 else ''})")
