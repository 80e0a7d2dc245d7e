"""A configuration: the levers one side of an eval runs with (a JSON file).

{"name": "default",
 "signal": {"min_black_s": 2, "min_freeze_s": 5, "min_speech_s": 4},   # SignalConfig
 "idle_min_seconds": 30,
 "env": {"GEMINI_MAP_MODEL": "…", "SEGMENT_SECONDS": "120",
         "GEMINI_MEDIA_RESOLUTION": "low"}}                           # model runs only
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEYS = ("name", "signal", "idle_min_seconds", "env")


class ConfigError(ValueError):
    """A config file that cannot be used: names the file and the reason."""


@dataclass
class Config:
    name: str
    signal: dict[str, float] = field(default_factory=dict)
    idle_min_seconds: float = 30.0
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"CONFIG {path}: cannot read ({exc})") from exc
        return cls.from_dict(data, where=str(path), default_name=Path(path).stem)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "config", default_name: str = "config") -> Config:
        if not isinstance(data, dict):
            raise ConfigError(f"CONFIG {where}: must be a JSON object")
        unknown = set(data) - set(KEYS)
        if unknown:
            raise ConfigError(f"CONFIG {where}: unknown keys {sorted(unknown)}")
        return cls(
            name=str(data.get("name") or default_name),
            signal={k: float(v) for k, v in (data.get("signal") or {}).items()},
            idle_min_seconds=float(data.get("idle_min_seconds", 30.0)),
            env={k: str(v) for k, v in (data.get("env") or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "signal": self.signal,
            "idle_min_seconds": self.idle_min_seconds,
            "env": self.env,
        }
