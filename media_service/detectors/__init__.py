"""Detectors: one box type, `Detection` (on `Corners`, the corner convention every box shares), and
the back ends that turn frames into boxes.

Every back end takes an RGB image (numpy, height x width x 3) and returns `Detection`s in that
image's pixels; the features (privacy, annotation) never ask which back end they hold.

The interface (`Detector`): `name`, `version` (which model made the boxes, to store beside them),
`labels` (the label names it can produce; empty for an open vocabulary such as Rekognition's),
`detect(rgb, threshold=None)` for one frame and `detect_batch(frames, threshold=None)` for many
(one list of boxes per frame, in order). `threshold` is a score 0..1; None means the back end's
configured default. `BatchDetector` gives `detect_batch` as a loop over `detect`.

Back ends: `centerface.CenterFace` (faces, offline), `yolox.YoloxNano` (COCO objects, offline, the
default), `ssd_mobilenet.SsdMobileNet` (COCO objects, offline), `local.LocalDetector` (an object
model plus CenterFace: the default for auto-annotation; `without_faces` leaves CenterFace out),
`darknet.Darknet` (a customer's YOLO model), `rekognition.Rekognition` / `RekognitionLabels` /
`RekognitionAnnotator` (AWS).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Corners:
    """An axis-aligned box in pixels: (x1, y1) its top-left corner, (x2, y2) its bottom-right. The one
    corner convention of every box here: a detection, and a dataset's label box (`datasets.labels.Box`)."""
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def clipped(self, width: float, height: float):
        """The same box (of the same type, other fields kept) inside a `width` x `height` picture."""
        return replace(self, x1=min(max(self.x1, 0.0), width), y1=min(max(self.y1, 0.0), height),
                       x2=min(max(self.x2, 0.0), width), y2=min(max(self.y2, 0.0), height))


@dataclass(frozen=True)
class Detection(Corners):
    """A box (`Corners`: x1, y1 top-left, x2, y2 bottom-right, in pixels), a score 0..1 and a label."""
    score: float
    label: str = "face"

    def scaled(self, sx: float, sy: float) -> "Detection":
        return Detection(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy, self.score, self.label)

    def shifted(self, dx: float, dy: float) -> "Detection":
        """The same box `dx`, `dy` pixels further right and down (from a crop to its frame)."""
        return Detection(self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy, self.score, self.label)

    def moved(self, x1: float, y1: float, x2: float, y2: float) -> "Detection":
        """The same detection at another place (score and label kept)."""
        return Detection(x1, y1, x2, y2, self.score, self.label)


@runtime_checkable
class Detector(Protocol):
    """What every back end offers (see the module's docstring)."""
    name: str
    version: str
    labels: tuple[str, ...]

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]: ...

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]: ...


class BatchDetector:
    """A base for back ends: `detect_batch` loops over `detect` (override it where the model can
    take a whole batch at once)."""
    name: str = ""
    version: str = ""
    labels: tuple[str, ...] = ()

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        raise NotImplementedError

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        return [self.detect(frame, threshold) for frame in frames]
