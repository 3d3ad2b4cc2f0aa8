"""Detectors: one box type, `Detection`, and the back ends that turn frames into boxes.

Every back end takes an RGB image (numpy, height x width x 3) and returns `Detection`s in that
image's pixels; the features (privacy, annotation) never ask which back end they hold.
"""
from __future__ import annotations

from dataclasses import dataclass


class DetectorError(RuntimeError):
    """Detection failed on a frame (the caller decides whether to fail closed)."""


class DetectorUnavailable(RuntimeError):
    """The detector's service is down or throttling after its own retries: try the job again later,
    never count its frames as detected."""


class DetectorMisconfigured(RuntimeError):
    """The detector cannot work as configured (model files, credentials): retrying cannot help."""


@dataclass(frozen=True)
class Detection:
    """A box (x1, y1) top-left to (x2, y2) bottom-right in pixels, a score 0..1 and a label."""
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str = "face"

    def scaled(self, sx: float, sy: float) -> "Detection":
        return Detection(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy, self.score, self.label)

    def moved(self, x1: float, y1: float, x2: float, y2: float) -> "Detection":
        """The same detection at another place (score and label kept)."""
        return Detection(x1, y1, x2, y2, self.score, self.label)
