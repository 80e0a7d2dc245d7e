"""A webcam picture, frame by frame (numpy, pure given the recipe and its seed).

The recipe's `picture` (every key optional):

    {"size": "320x240", "fps": 10, "seed": 1,
     "candidate": "hopper",            # photos.py name; null: an empty room throughout
     "wall": [0.55, 0.50, 0.45],       # the room's colour (linear RGB, 0-1)
     "gain": 1.0,                      # how bright the room is lit (0.3: a dim room)
     "noise": 0.02,                    # sensor noise (standard deviation, 0-1)
     "events": [{"kind": ..., "start_s": a, "end_s": b, ...}],
     "lighting": [{"kind": "ramp", "start_s": a, "end_s": b, "to": 0.4},
                  {"kind": "jump", "at_s": t, "gain": 1.8, "recover_s": 1.5}]}

Event kinds (what the frames show between start_s and end_s):

| kind | parameters | shows |
|---|---|---|
| `absent` | | the room without the candidate |
| `second_person` | `photo`, `x` (0-1), `height` (share of frame) | another person nearby |
| `different_person` | `photo` | someone else in the candidate's place |
| `looking_away` | `direction` (left / right) | the candidate turned away, off-centre |
| `moved` | `dx`, `dy` (share of the frame) | the candidate leaning aside (not an event) |
| `scaled` | `height` | the candidate closer or further (not an event) |
| `phone` | `x`, `y` | a phone held up, screen lit |
| `occluded` | `what` (hand / mug) | part of the face hidden (not an event) |
| `hand` | `level` (mean brightness 0-1), `texture` | a hand over the lens (dark, not black) |
| `black` | | a black lens (tape, a cap, a covered camera) |
| `frozen` | | the frame at start_s, repeated byte for byte |

Lighting multiplies the picture: a `ramp` moves the gain linearly to `to` (and holds it), a
`jump` is an auto-exposure step that decays back over `recover_s`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from evals.synth.photos import Sprite, sprite

EVENT_KINDS = (
    "absent",
    "second_person",
    "different_person",
    "looking_away",
    "moved",
    "scaled",
    "phone",
    "occluded",
    "hand",
    "black",
    "frozen",
)


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    fps: int
    seed: int
    candidate: str | None
    wall: tuple[float, float, float]
    gain: float
    noise: float
    events: tuple[Mapping[str, Any], ...]
    lighting: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_recipe(cls, raw: Mapping[str, Any]) -> Picture:
        w, h = (int(v) for v in str(raw.get("size", "320x240")).split("x"))
        for event in raw.get("events", []):
            if event.get("kind") not in EVENT_KINDS:
                raise ValueError(f"picture.events: unknown kind {event.get('kind')!r}")
        wall = tuple(float(v) for v in raw.get("wall", (0.55, 0.5, 0.45)))
        return cls(
            width=w,
            height=h,
            fps=int(raw.get("fps", 10)),
            seed=int(raw.get("seed", 1)),
            candidate=raw.get("candidate", "hopper"),
            wall=wall,  # type: ignore[arg-type]
            gain=float(raw.get("gain", 1.0)),
            noise=float(raw.get("noise", 0.02)),
            events=tuple(raw.get("events", [])),
            lighting=tuple(raw.get("lighting", [])),
        )


def _active(events: Sequence[Mapping[str, Any]], t: float) -> list[Mapping[str, Any]]:
    return [e for e in events if float(e["start_s"]) <= t < float(e["end_s"])]


@cache
def _room(width: int, height: int, wall: tuple[float, float, float], seed: int) -> np.ndarray:
    """A wall lit from one side, a door frame and a shelf: still, but not flat."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 0.75 + 0.35 * (1 - xx / width) - 0.15 * (yy / height)
    room = np.asarray(wall, dtype=np.float32)[None, None, :] * light[:, :, None]
    door_x = int(width * rng.uniform(0.05, 0.2))
    room[: int(height * 0.8), door_x : door_x + width // 6] *= 0.7
    shelf_y = int(height * rng.uniform(0.15, 0.3))
    room[shelf_y : shelf_y + max(2, height // 40), width // 2 :] = (0.35, 0.25, 0.15)
    for k in range(5):  # books on the shelf
        x = width // 2 + 8 + k * max(4, width // 30)
        colour = rng.uniform(0.1, 0.8, 3)
        room[shelf_y - height // 10 : shelf_y, x : x + max(3, width // 40)] = colour
    return room.clip(0, 1)


@cache
def _hand(width: int, height: int, level: float, texture: float, seed: int) -> np.ndarray:
    """A palm over the lens: skin, out of focus, lit through the fingers at one edge."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    blur = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
    )
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    leak = np.clip((xx - 0.85) / 0.15, 0, 1) ** 2  # light between two fingers
    luma = level * (1 + texture * blur) + 0.5 * level * leak
    skin = np.asarray((1.25, 0.85, 0.7), np.float32)  # reddish: light through skin
    return (luma[:, :, None] * skin[None, None, :]).clip(0, 1)


@cache
def _variant(name: str, height: int, squash: float, flip: bool) -> Sprite:
    base = sprite(name, height)
    if squash == 1.0 and not flip:
        return base
    w = max(2, round(base.rgb.shape[1] * squash))
    rgb = np.asarray(
        Image.fromarray((base.rgb * 255).astype(np.uint8)).resize((w, height)), np.float32
    )
    alpha = np.asarray(Image.fromarray(base.alpha).resize((w, height)), np.float32)
    rgb = rgb / 255.0
    if flip:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return Sprite(np.ascontiguousarray(rgb), np.ascontiguousarray(alpha))


def _blend(frame: np.ndarray, s: Sprite, cx: float, bottom: float) -> None:
    """Alpha-blend `s` into `frame` with its bottom centre at (cx, bottom), clipped."""
    h, w = s.alpha.shape
    x0, y0 = round(cx - w / 2), round(bottom - h)
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(frame.shape[1], x0 + w), min(frame.shape[0], y0 + h)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    a = s.alpha[sub][:, :, None]
    frame[fy0:fy1, fx0:fx1] = frame[fy0:fy1, fx0:fx1] * (1 - a) + s.rgb[sub] * a


def _gain(p: Picture, t: float) -> float:
    gain = p.gain
    for light in p.lighting:
        if light["kind"] == "ramp":
            a, b = float(light["start_s"]), float(light["end_s"])
            share = min(1.0, max(0.0, (t - a) / max(b - a, 1e-6)))
            gain *= 1 + (float(light["to"]) - 1) * share
        elif light["kind"] == "jump" and t >= float(light["at_s"]):
            decay = math.exp(-(t - float(light["at_s"])) / max(float(light["recover_s"]), 0.1))
            gain *= 1 + (float(light["gain"]) - 1) * decay
        else:
            continue
    return gain


def render(p: Picture, t: float, rng: np.random.Generator) -> np.ndarray:
    """One frame at time `t` (uint8 RGB)."""
    active = _active(p.events, t)
    kinds = {e["kind"]: e for e in active}
    if "black" in kinds:
        frame = np.zeros((p.height, p.width, 3), np.float32)
        return _finish(frame + rng.normal(0, 0.004, frame.shape), 1.0)
    if "hand" in kinds:
        e = kinds["hand"]
        frame = _hand(p.width, p.height, float(e.get("level", 0.12)),
                      float(e.get("texture", 0.35)), p.seed).copy()  # fmt: skip
        return _finish(frame + rng.normal(0, p.noise, frame.shape), 1.0)
    frame = _room(p.width, p.height, p.wall, p.seed).copy()
    for e in active:
        if e["kind"] == "second_person":
            height = round(p.height * float(e.get("height", 0.6)))
            other = _variant(str(e["photo"]), height, 1.0, False)
            _blend(frame, other, p.width * float(e.get("x", 0.8)), p.height * 1.02)
    candidate = str(kinds["different_person"]["photo"]) if "different_person" in kinds else None
    candidate = candidate or p.candidate
    if candidate and "absent" not in kinds:
        height = round(p.height * float(kinds.get("scaled", {}).get("height", 0.85)))
        sway = 0.02 * p.width * math.sin(2 * math.pi * t / 7.0) + 0.01 * p.width * math.sin(t * 1.9)
        cx, bottom = p.width / 2 + sway, p.height * (1.03 + 0.005 * math.sin(2 * math.pi * t / 4))
        squash, flip = 1.0, False
        if "looking_away" in kinds:
            side = -1 if kinds["looking_away"].get("direction", "left") == "left" else 1
            cx += side * 0.28 * p.width
            squash, flip = 0.72, side > 0
        if "moved" in kinds:
            cx += float(kinds["moved"].get("dx", 0)) * p.width
            bottom += float(kinds["moved"].get("dy", 0)) * p.height
        _blend(frame, _variant(candidate, height, squash, flip), cx, bottom)
        if "occluded" in kinds:
            _occlude(frame, str(kinds["occluded"].get("what", "hand")), cx, bottom - height, height)
    if "phone" in kinds:
        e = kinds["phone"]
        _phone(frame, float(e.get("x", 0.68)) * p.width, float(e.get("y", 0.55)) * p.height)
    frame *= _gain(p, t)
    sigma = p.noise * (1 + max(0.0, 0.6 - _gain(p, t)))  # dim light: more visible noise
    return _finish(frame + rng.normal(0, sigma, frame.shape), 1.0)


def _finish(frame: np.ndarray, scale: float) -> np.ndarray:
    return (frame * scale * 255).clip(0, 255).astype(np.uint8)


def _phone(frame: np.ndarray, cx: float, cy: float) -> None:
    h, w = frame.shape[:2]
    pw, ph = max(6, w // 9), max(10, h // 5)
    x0, y0 = int(cx - pw / 2), int(cy - ph / 2)
    frame[y0 : y0 + ph, x0 : x0 + pw] = (0.08, 0.08, 0.09)  # the body
    m = max(1, pw // 10)
    frame[y0 + 2 * m : y0 + ph - 2 * m, x0 + m : x0 + pw - m] = (0.55, 0.75, 0.95)  # lit screen
    for k in range(3):  # a few lines of an app
        y = y0 + 3 * m + k * max(2, ph // 7)
        frame[y : y + max(1, m), x0 + 2 * m : x0 + pw - 2 * m] = (0.95, 0.95, 0.95)
    frame[y0 + ph // 2 : y0 + ph, x0 + pw - m : x0 + pw + 2 * m] = (0.75, 0.55, 0.45)  # fingers


def _occlude(frame: np.ndarray, what: str, cx: float, top: float, person_h: int) -> None:
    """A hand or a mug in front of the mouth and chin (the eyes stay visible)."""
    h, w = frame.shape[:2]
    y, x = int(top + person_h * 0.5), int(cx)
    rx, ry = int(w * 0.09), int(h * 0.08)
    yy, xx = np.ogrid[0:h, 0:w]
    if what == "mug":
        frame[max(0, y - ry) : y + ry, max(0, x - rx) : x + rx] = (0.85, 0.85, 0.82)
        return
    inside = ((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2 <= 1
    frame[inside] = (0.78, 0.58, 0.48)


def frames(p: Picture, duration_s: float) -> Iterator[bytes]:
    """Every frame of `duration_s` seconds as raw RGB bytes; frozen stretches repeat the
    frame at their start exactly (the same bytes, noise included)."""
    rng = np.random.default_rng(p.seed)
    frozen = [e for e in p.events if e["kind"] == "frozen"]
    held: dict[int, bytes] = {}
    for n in range(round(duration_s * p.fps)):
        t = n / p.fps
        stuck = next((i for i, e in enumerate(frozen) if e["start_s"] <= t < e["end_s"]), None)
        if stuck is not None and stuck in held:
            yield held[stuck]
            continue
        data = render(p, t, rng).tobytes()
        if stuck is not None:
            held[stuck] = data
        yield data
