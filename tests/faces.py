"""Test clips with real faces: scikit-image's astronaut photo, panned and scaled over a textured
background, with a second face entering half-way. Each frame's true face boxes are known."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from tests.media import make_video

# The astronaut's head in the 512x512 photo, with hair and neck around it (BGR), and where the face
# itself is inside that crop (x1, y1, x2, y2; CenterFace's box on the photo).
_HEAD = data.astronaut()[30:230, 140:310, ::-1].copy()
_FACE_IN_HEAD = (42 / 170, 28 / 200, 130 / 170, 148 / 200)


def background(width: int, height: int) -> np.ndarray:
    """A fixed texture (detail everywhere, so an accidental blur would show)."""
    rng = np.random.default_rng(7)
    noise = cv2.resize(rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    return np.clip(noise * 0.5 + ramp * 0.5, 0, 255).astype(np.uint8)


class FaceScene:
    """Face A pans left to right and grows; face B (mirrored) enters from the right half-way."""

    def __init__(self, frames: int, width: int, height: int):
        self.frames, self.width, self.height = frames, width, height
        self.back = background(width, height)

    def _heads(self, number: int) -> list[tuple[np.ndarray, int, int]]:
        t = (number - 1) / max(1, self.frames - 1)
        size = self.height * (0.45 + 0.2 * t)
        head_a = cv2.resize(_HEAD, (int(size * 170 / 200), int(size)), interpolation=cv2.INTER_AREA)
        heads = [(head_a, int(self.width * (0.05 + 0.35 * t)), int(self.height * 0.08))]
        if number > self.frames // 2:
            u = (number - self.frames // 2) / max(1, self.frames - self.frames // 2)
            head_b = cv2.resize(_HEAD[:, ::-1], (int(self.height * 0.4 * 170 / 200), int(self.height * 0.4)),
                                interpolation=cv2.INTER_AREA)
            heads.append((head_b, int(self.width * (1.0 - 0.35 * u)), int(self.height * 0.45)))
        return heads

    def boxes(self, number: int) -> list[tuple[int, int, int, int]]:
        """The faces' visible boxes on the upright picture of frame `number` (1-based)."""
        out = []
        for head, x, y in self._heads(number):
            h, w = head.shape[:2]
            fx1, fy1, fx2, fy2 = (x + _FACE_IN_HEAD[0] * w, y + _FACE_IN_HEAD[1] * h,
                                  x + _FACE_IN_HEAD[2] * w, y + _FACE_IN_HEAD[3] * h)
            x1, y1 = max(0, int(fx1)), max(0, int(fy1))
            x2, y2 = min(self.width, int(fx2)), min(self.height, int(fy2))
            if x2 > x1 and y2 > y1:
                out.append((x1, y1, x2, y2))
        return out

    def render(self, number: int) -> np.ndarray:
        image = self.back.copy()
        for head, x, y in self._heads(number):
            h, w = head.shape[:2]
            x1, y1, x2, y2 = max(0, x), max(0, y), min(self.width, x + w), min(self.height, y + h)
            if x2 > x1 and y2 > y1:
                image[y1:y2, x1:x2] = head[y1 - y:y2 - y, x1 - x:x2 - x]
        return image


_TURN_BACK = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def make_face_clip(path: Path, frames: int = 50, size: tuple[int, int] = (640, 360), fps: int = 25,
                   audio: bool = True, rotation: int = 0) -> FaceScene:
    """Write the scene; with `rotation` the coded frames are turned so that the displayed
    (rotated) picture is the upright scene."""
    scene = FaceScene(frames, *size)
    coded = size if rotation in (0, 180) else size[::-1]

    def render(number: int, width: int, height: int) -> np.ndarray:
        upright = scene.render(number)
        return cv2.rotate(upright, _TURN_BACK[rotation]) if rotation else upright

    make_video(path, frames, fps, size=coded, rotation=rotation, audio=audio, render=render)
    return scene
