"""Frames in, contract-shaped boxes out: the configured detector on a downscaled copy of each frame,
boxes scaled back to task-video pixels, filtered and named by the project's label policy."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from media_service import metrics
from media_service.annotation.policy import LabelPolicy
from media_service.contract import auto_box

log = logging.getLogger(__name__)


class Annotator:
    """One run's annotator (a FrameAnnotator): the process's shared detector, this project's labels,
    this run's version."""

    def __init__(self, detector, policy: LabelPolicy, version: int, detect_max_side: int, batch_size: int):
        self.detector, self.policy, self.version = detector, policy, version
        self.detect_max_side, self.batch_size = detect_max_side, batch_size
        self.model = f"{detector.name} {detector.version}".strip()
        self._calls_at_start = getattr(detector, "calls", 0)
        self.frames = 0
        self.boxes = 0

    def input_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size to hand frames over at for boxes in `size` pixels: longer side at most
        `detect_max_side` (a smaller copy is much faster to detect on)."""
        width, height = size
        if not self.detect_max_side or max(width, height) <= self.detect_max_side:
            return width, height
        scale = self.detect_max_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def annotate(self, frames: list[np.ndarray], size: tuple[int, int]) -> list[list[dict]]:
        """RGB frames (any size; larger than `input_size` they are scaled down) in; per frame its
        boxes in `size` pixels (the task video's)."""
        small = [self._small(frame, size) for frame in frames]
        results = []
        for start in range(0, len(small), self.batch_size):
            batch = small[start:start + self.batch_size]
            started = time.perf_counter()
            found_in_batch = self.detector.detect_batch(batch)
            for _ in batch:
                metrics.observe("detector_seconds", (time.perf_counter() - started) / len(batch),
                                detector=self.detector.name)
            metrics.count("frames", len(batch), stage="detect")
            for frame, found in zip(batch, found_in_batch):
                sx, sy = size[0] / frame.shape[1], size[1] / frame.shape[0]
                results.append(self._boxes(size[0], size[1], [d.scaled(sx, sy) for d in found]))
        self.frames += len(frames)
        return results

    def _small(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        target = self.input_size(size)
        if frame.shape[1] <= target[0] and frame.shape[0] <= target[1]:
            return np.ascontiguousarray(frame)
        return cv2.resize(frame, target, interpolation=cv2.INTER_AREA)

    def _boxes(self, width: int, height: int, detections) -> list[dict]:
        boxes = []
        for label, detection in self.policy.keep(detections):
            x1, y1 = max(0, round(detection.x1)), max(0, round(detection.y1))
            x2, y2 = min(width, round(detection.x2)), min(height, round(detection.y2))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append(auto_box(len(boxes), label, self.policy.colors[label], x1, y1, x2 - x1, y2 - y1,
                                  detection.score, self.version, self.model))
        self.boxes += len(boxes)
        return boxes

    def summary(self) -> dict:
        fields = {"annotationModel": self.model, "annotatedFrames": self.frames, "annotationBoxes": self.boxes,
                  "labelsLeftOut": dict(self.policy.left_out)}
        if hasattr(self.detector, "calls"):
            fields["rekognitionCalls"] = self.detector.calls - self._calls_at_start
        if self.policy.left_out:
            log.info("labels the project does not have were left out: %s", dict(self.policy.left_out))
        if "rekognitionCalls" in fields:
            log.info("%d billable Rekognition calls", fields["rekognitionCalls"])
        return fields
