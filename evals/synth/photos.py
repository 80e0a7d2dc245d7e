"""Real photographs of people that installed packages ship, as head-and-shoulders sprites.

| name | what | shipped by |
|---|---|---|
| `hopper` | Grace Hopper, portrait (colour) | matplotlib `sample_data/grace_hopper.jpg` |
| `astronaut` | Eileen Collins, NASA portrait (colour) | scikit-image `skimage/data/astronaut.png` |
| `camera` | a man with a camera, in profile (grey) | scikit-image `skimage/data/camera.png` |
| `lfw:N` | face N (0-99) of an LFW subset, 25x25 grey | scikit-image `lfw_subset.npy` |

A sprite is an RGB float image in [0, 1] and an alpha mask (a feathered ellipse around head
and shoulders), so it can be moved, scaled and blended over a room.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

# Head-and-shoulders boxes (x0, y0, x1, y1) in the source photographs, chosen by eye.
_CROPS = {
    "hopper": (40, 0, 480, 560),
    "astronaut": (40, 0, 410, 400),
    "camera": (150, 20, 400, 330),
}


@dataclass(frozen=True)
class Sprite:
    rgb: np.ndarray  # (h, w, 3) float32 in [0, 1]
    alpha: np.ndarray  # (h, w) float32 in [0, 1]


def _source(name: str) -> np.ndarray:
    """The photograph as uint8 RGB."""
    if name == "hopper":
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
            return np.asarray(img.convert("RGB"))
    from skimage import data

    if name == "astronaut":
        return np.asarray(data.astronaut())
    if name == "camera":
        grey = np.asarray(data.camera())
        return np.repeat(grey[:, :, None], 3, axis=2)
    if name.startswith("lfw:"):
        index = int(name.split(":", 1)[1])
        if not 0 <= index < 100:  # 100-199 of the subset are not faces
            raise ValueError(f"photo {name!r}: LFW faces are lfw:0 .. lfw:99")
        face = (np.asarray(data.lfw_subset()[index]) * 255).astype(np.uint8)
        # A warm tint: grey skin in a colour webcam looks like nothing a camera gives.
        rgb = np.stack([face * 1.0, face * 0.9, face * 0.8], axis=2)
        return rgb.clip(0, 255).astype(np.uint8)
    raise ValueError(f"photo {name!r}: unknown (hopper, astronaut, camera, lfw:0..99)")


@cache
def sprite(name: str, height: int) -> Sprite:
    """The person in photograph `name`, `height` pixels tall, with a soft-edged mask."""
    image = _source(name)
    if name in _CROPS:
        x0, y0, x1, y1 = _CROPS[name]
        image = image[y0:y1, x0:x1]
    h, w = image.shape[:2]
    width = max(2, round(w * height / h))
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
    rgb = np.asarray(resized, dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rx = (xx - width / 2) / (width * 0.5)
    if name.startswith("lfw:"):  # a tight face crop: an ellipse all round
        ry = (yy - height / 2) / (height * 0.5)
    else:  # head and shoulders: an arch over the head, straight down the sides
        ry = np.minimum((yy - height * 0.55) / (height * 0.55), 0.0)
    alpha = np.clip((1.0 - np.sqrt(rx**2 + ry**2)) / 0.15, 0.0, 1.0)
    return Sprite(rgb, alpha.astype(np.float32))
