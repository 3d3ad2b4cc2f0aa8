"""`LocalDetector`, the offline back end for auto-annotation: an object model (YOLOX-Nano by
default, SSD MobileNet v2 when configured) plus CenterFace for faces (around the people the object
model found, by default), in one `detect_batch`."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from media_service.detectors import BatchDetector, Detection
from media_service.detectors.labels import FACE

PERSON = "person"  # the COCO label of both object models
PERSON_MARGIN = 0.25  # of a person's width and height, on each side: a head at the box's edge is whole
MIN_REGION = 8  # pixels: a smaller region holds no face CenterFace can find
REGION_MAX_SIDE = 320  # pixels: a larger region is searched on a copy this size (its face stays large)


class LocalDetector(BatchDetector):
    """Objects from `objects` (any back end with COCO labels), faces (label "face") from `faces`.

    `object_threshold` / `face_threshold`: default minimum scores (a `threshold` given to a call
    applies to both). `face_search`: "people" looks for faces only around the people the object
    model found (each person's box with a quarter of its size around it, at the frame's scale): a
    face in annotation footage comes with its person, and this costs a fraction of the whole frame
    (bench/README.md: 17 against 42 CPU-ms a frame on the bench scene, the same 34 faces; the same
    faces on real footage); "frame" looks on the whole frame, at most `face_max_side` across.
    `faces` may be None: then no face model runs (`without_faces` makes such a view of a loaded
    detector).
    """

    name = "local"

    def __init__(self, objects, faces, object_threshold: float = 0.5, face_threshold: float = 0.5,
                 face_max_side: int | None = 1280, face_search: str = "people"):
        self.objects, self.faces = objects, faces
        self.object_threshold, self.face_threshold = object_threshold, face_threshold
        self.face_max_side, self.face_search = face_max_side, face_search
        self.version = self.objects.version + (f" + {self.faces.version}" if faces is not None else "")
        self.labels = tuple(dict.fromkeys(self.objects.labels + ((FACE,) if faces is not None else ())))

    def without_faces(self) -> "LocalDetector":
        """The same loaded models, the face model left out (for projects without a face label)."""
        return LocalDetector(self.objects, None, self.object_threshold, self.face_threshold, self.face_max_side,
                             self.face_search)

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        return self.detect_batch([rgb], threshold)[0]

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        objects = self.objects.detect_batch(frames, self.object_threshold if threshold is None else threshold)
        if self.faces is None:
            return objects
        face_threshold = self.face_threshold if threshold is None else threshold
        if self.face_search == "people":
            return [found + self._faces_of_people(frame, found, face_threshold)
                    for frame, found in zip(frames, objects)]
        return [found + self._faces(frame, face_threshold) for frame, found in zip(frames, objects)]

    def _faces_of_people(self, rgb: np.ndarray, found: list[Detection], threshold: float) -> list[Detection]:
        """Faces in the regions around the people found (overlapping regions may see one face twice:
        non-maximum suppression keeps one)."""
        height, width = rgb.shape[:2]
        faces = []
        for person in (d for d in found if d.label == PERSON):
            margin_x, margin_y = (person.x2 - person.x1) * PERSON_MARGIN, (person.y2 - person.y1) * PERSON_MARGIN
            x1, y1 = max(0, int(person.x1 - margin_x)), max(0, int(person.y1 - margin_y))
            x2, y2 = min(width, int(person.x2 + margin_x) + 1), min(height, int(person.y2 + margin_y) + 1)
            if x2 - x1 < MIN_REGION or y2 - y1 < MIN_REGION:
                continue
            region, scale = rgb[y1:y2, x1:x2], min(1.0, REGION_MAX_SIDE / max(x2 - x1, y2 - y1))
            if scale < 1.0:  # a large person: the face is large too, and is found on a smaller copy
                region = cv2.resize(region, (max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))),
                                    interpolation=cv2.INTER_AREA)
            faces += [face.scaled(1 / scale, 1 / scale).shifted(x1, y1)
                      for face in self.faces.detect(np.ascontiguousarray(region), threshold)]
        if len(faces) < 2:
            return faces
        keep = cv2.dnn.NMSBoxes([[f.x1, f.y1, f.x2 - f.x1, f.y2 - f.y1] for f in faces], [f.score for f in faces],
                                threshold, 0.3)
        return [faces[i] for i in np.array(keep).reshape(-1)]

    def _faces(self, rgb: np.ndarray, threshold: float) -> list[Detection]:
        height, width = rgb.shape[:2]
        if self.face_max_side and max(height, width) > self.face_max_side:
            scale = self.face_max_side / max(height, width)
            small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
            sx, sy = width / small.shape[1], height / small.shape[0]
            return [face.scaled(sx, sy) for face in self.faces.detect(small, threshold)]
        return self.faces.detect(np.ascontiguousarray(rgb), threshold)
