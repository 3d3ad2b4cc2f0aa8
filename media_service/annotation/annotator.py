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
from media_service.detectors import Detection

log = logging.getLogger(__name__)


class Annotator:
    """One run's annotator (a FrameAnnotator): the process's shared detector, this project's labels,
    this run's version."""

    def __init__(self, detector, policy: LabelPolicy, version: int, detect_max_side: int, batch_size: int,
                 detect_every: int = 1):
        self.detector, self.policy, self.version = detector, policy, version
        self.detect_max_side, self.detect_every = detect_max_side, max(1, detect_every)
        self.detector_batch = batch_size
        self.batch_size = batch_size * self.detect_every  # frames a caller hands over at once
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
        boxes in `size` pixels (the task video's). With `detect_every` k > 1, the detector sees
        every k-th frame of the list and its last one; frames between get the boxes of the two
        detections around them, moved linearly (a box seen on only one side is not carried)."""
        chosen = sorted({*range(0, len(frames), self.detect_every), len(frames) - 1}) if frames else []
        found: dict[int, list] = {}
        for start in range(0, len(chosen), self.detector_batch):
            indices = chosen[start:start + self.detector_batch]
            batch = [self._small(frames[i], size) for i in indices]  # only the frames the detector sees
            started = time.perf_counter()
            detected = self.detector.detect_batch(batch)
            for _ in batch:
                metrics.observe("detector_seconds", (time.perf_counter() - started) / len(batch),
                                detector=self.detector.name)
            metrics.count("frames", len(batch), stage="detect")
            for index, frame, boxes in zip(indices, batch, detected):
                sx, sy = size[0] / frame.shape[1], size[1] / frame.shape[0]
                found[index] = [d.scaled(sx, sy) for d in boxes]
        for before, after in zip(chosen, chosen[1:]):
            for index in range(before + 1, after):
                found[index] = between(found[before], found[after], (index - before) / (after - before))
        self.frames += len(frames)
        return [self._boxes(size[0], size[1], found[index]) for index in range(len(frames))]

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

    def report(self) -> dict:
        """The run's counts for its job's result (what the status API and the jobs page show): the
        detections left out because the project lacks their labels, by detector label."""
        return {"model": self.model, "frames": self.frames, "boxes": self.boxes,
                "labels_left_out": dict(self.policy.left_out)}

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


def between(first: list[Detection], second: list[Detection], t: float) -> list[Detection]:
    """Boxes of a frame a fraction `t` of the way from one detected frame to the next: each box of
    the first paired with the nearest box of the same label in the second (their centres closer
    than their size), moved linearly; scores the lower of the two."""
    placed, taken = [], set()
    for a in first:
        size = max(a.x2 - a.x1, a.y2 - a.y1, 1.0)
        candidates = [(abs((a.x1 + a.x2 - b.x1 - b.x2) / 2) + abs((a.y1 + a.y2 - b.y1 - b.y2) / 2), n)
                      for n, b in enumerate(second) if b.label == a.label and n not in taken]
        if not candidates:
            continue
        distance, n = min(candidates)
        if distance > size:
            continue
        taken.add(n)
        b = second[n]
        placed.append(Detection(a.x1 + (b.x1 - a.x1) * t, a.y1 + (b.y1 - a.y1) * t, a.x2 + (b.x2 - a.x2) * t,
                                a.y2 + (b.y2 - a.y2) * t, min(a.score, b.score), a.label))
    return placed
