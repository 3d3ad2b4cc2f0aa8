"""Adaptive sampling: among the frames the rate picked, leave out those that repeat the last frame kept.

A still camera on a still scene gives the same picture again and again; people would annotate it
again and again. Each frame the rate picks is compared with the last frame kept, on a small grey
copy (`GRID_WIDTH` cells across): a cell has changed when its grey level moved by more than
`CHANGED_LEVEL` once the frame's overall brightness shift (exposure, light) is taken out, and the
frame is new when more than `CHANGED_SHARE` of the cells changed. Comparing with the last frame
*kept* (not the previous one) lets a slow change add up until it counts, and puts the first frame
after a scene cut always on the kept side. A frame is kept at least every `max_gap` seconds
whatever the picture does, so nothing slower than that is lost.

Measured (bench/README.md, adaptive sampling): on vtest.avi (a real fixed camera, 768x576) the
frames with the fewest changes still had 0.2% of cells moved by a person walking; noise of sigma 3,
8 and 15 grey levels on a held frame moved no cell past the threshold.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np

from media_service.media.decode import SampledFrame
from media_service.media.sampling import ResumePoint

GRID_WIDTH = 160      # cells across the small grey copy (its height keeps the frame's shape)
CHANGED_LEVEL = 12    # grey levels (of 255) a cell must move to count as changed
CHANGED_SHARE = 0.001  # share of cells that must change for a frame to count as new


def small_grey(frame: av.VideoFrame) -> np.ndarray:
    """The frame as a small grey picture (each cell the mean of its area: noise averages out)."""
    height = max(1, round(frame.height * GRID_WIDTH / max(1, frame.width)))
    return frame.reformat(width=GRID_WIDTH, height=height, format="gray", interpolation="AREA").to_ndarray()


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """The share of cells whose grey level moved by more than CHANGED_LEVEL, after the median shift."""
    diff = a.astype(np.int16) - b.astype(np.int16)
    diff -= np.int16(np.median(diff))  # the whole picture brighter or darker is no new content
    return float(np.count_nonzero(np.abs(diff) > CHANGED_LEVEL)) / diff.size


@dataclass
class NearDuplicates:
    """What the adaptive sampler knows: the last frame kept (its grey copy and time) and counts.
    Saved with every resume point, so a resumed run judges the next frames as an unbroken one."""
    max_gap: float
    kept: int = 0
    left_out: int = 0
    last_time: float | None = None
    reference: np.ndarray | None = None

    def is_new(self, frame: av.VideoFrame, time: float) -> bool:
        grey = small_grey(frame)
        new = (self.reference is None or self.reference.shape != grey.shape
               or time - self.last_time >= self.max_gap - 1e-9
               or changed_share(grey, self.reference) > CHANGED_SHARE)
        if new:
            self.kept, self.last_time, self.reference = self.kept + 1, time, grey
        else:
            self.left_out += 1
        return new

    def to_doc(self) -> dict:
        reference = None
        if self.reference is not None:
            reference = {"shape": list(self.reference.shape), "grey": zlib.compress(self.reference.tobytes())}
        return {"kept": self.kept, "left_out": self.left_out, "last_time": self.last_time, "reference": reference}

    @classmethod
    def from_doc(cls, doc: dict | None, max_gap: float) -> "NearDuplicates":
        if not doc:
            return cls(max_gap)
        reference = doc.get("reference")
        grey = None
        if reference:
            grey = np.frombuffer(zlib.decompress(reference["grey"]), np.uint8).reshape(reference["shape"])
        return cls(max_gap, doc["kept"], doc["left_out"], doc["last_time"], grey)


def leave_out_near_duplicates(samples: Iterator[tuple[SampledFrame, ResumePoint]], judge: NearDuplicates
                              ) -> Iterator[tuple[SampledFrame, ResumePoint]]:
    """The samples that are new to `judge`, each with its resume point carrying the judge's state."""
    for sample, point in samples:
        if judge.is_new(sample.frame, sample.time):
            point.near_duplicates = judge.to_doc()
            yield sample, point
