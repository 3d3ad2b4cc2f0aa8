"""`LocalDetector`, the offline back end for auto-annotation: an object model (YOLOX-Nano by
default, SSD MobileNet v2 when configured) plus CenterFace for faces, in one `detect_batch`."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from media_service.detectors import BatchDetector, Detection
from media_service.detectors.labels import FACE


class LocalDetector(BatchDetector):
    """Objects from `objects` (any back end with COCO labels), faces (label "face") from `faces`.

    `object_threshold` / `face_threshold`: default minimum scores (a `threshold` given to a call
    applies to both). `face_max_side`: faces are looked for on a copy whose longer side is at most
    this (boxes come back in the given frame's pixels); None for full size. `faces` may be None:
    then no face model runs (`without_faces` makes such a view of a loaded detector).
    """

    name = "local"

    def __init__(self, objects, faces, object_threshold: float = 0.5, face_threshold: float = 0.5,
                 face_max_side: int | None = 1280):
        self.objects, self.faces = objects, faces
        self.object_threshold, self.face_threshold = object_threshold, face_threshold
        self.face_max_side = face_max_side
        self.version = self.objects.version + (f" + {self.faces.version}" if faces is not None else "")
        self.labels = tuple(dict.fromkeys(self.objects.labels + ((FACE,) if faces is not None else ())))

    def without_faces(self) -> "LocalDetector":
        """The same loaded models, the face model left out (for projects without a face label)."""
        return LocalDetector(self.objects, None, self.object_threshold, self.face_threshold, self.face_max_side)

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        return self.detect_batch([rgb], threshold)[0]

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        objects = self.objects.detect_batch(frames, self.object_threshold if threshold is None else threshold)
        if self.faces is None:
            return objects
        face_threshold = self.face_threshold if threshold is None else threshold
        return [found + self._faces(frame, face_threshold) for frame, found in zip(frames, objects)]

    def _faces(self, rgb: np.ndarray, threshold: float) -> list[Detection]:
        height, width = rgb.shape[:2]
        if self.face_max_side and max(height, width) > self.face_max_side:
            scale = self.face_max_side / max(height, width)
            small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
            sx, sy = width / small.shape[1], height / small.shape[0]
            return [face.scaled(sx, sy) for face in self.faces.detect(small, threshold)]
        return self.faces.detect(np.ascontiguousarray(rgb), threshold)
