"""Frames in, contract-shaped boxes out: the configured detector on a downscaled copy of every k-th
frame, boxes scaled back to task-video pixels, filtered and named by the project's label policy,
then linked into tracks over the whole upload (`tracks.Tracks`: one `trackId` per object, the
tracker's motion model places the boxes on the frames between detections)."""
from __future__ import annotations

import dataclasses
import logging
import time

import cv2
import numpy as np

from media_service import metrics
from media_service.annotation.policy import LabelPolicy
from media_service.annotation.tracks import Placed, Tracks, TrackSettings
from media_service.detectors import Detection
from media_service.platform_docs import annotation_upload_fields, auto_box

log = logging.getLogger(__name__)


class Annotator:
    """One run's annotator (a FrameAnnotator): the process's shared detector, this project's labels,
    this run's version, this upload's tracks.

    A task's frames come in order through `add`, then `end_task` gives their boxes. The detector
    sees each task's frames 0, k, 2k, ... and its last frame
    (`detect_every` k), so every predicted box of a task lies between two detections.
    """

    def __init__(self, detector, policy: LabelPolicy, version: int, detect_max_side: int, batch_size: int,
                 detect_every: int = 1, tracking: TrackSettings | None = None):
        self.detector, self.policy, self.version = detector, policy, version
        self.detect_max_side, self.detect_every = detect_max_side, max(1, detect_every)
        self.detector_batch = batch_size
        self.batch_size = batch_size * self.detect_every  # frames a caller hands over at once
        self.model = f"{detector.name} {detector.version}".strip()
        tracking = tracking or TrackSettings()
        # A track must outlive the frames between two detections.
        self.tracking = dataclasses.replace(tracking, max_gap=max(tracking.max_gap, self.detect_every))
        self.tracks = Tracks(self.tracking)
        self._calls_at_start = getattr(detector, "calls", 0)
        self._in_task = 0  # frames of the current task stepped so far
        self._held: list[np.ndarray] = []  # the latest frame added, until more come or the task ends
        self._size: tuple[int, int] = (0, 0)
        self.frames = self.detected = self.boxes = 0

    def input_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size to hand frames over at for boxes in `size` pixels: longer side at most
        `detect_max_side` (a smaller copy is much faster to detect on)."""
        width, height = size
        if not self.detect_max_side or max(width, height) <= self.detect_max_side:
            return width, height
        scale = self.detect_max_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def sees(self, position: int) -> bool:
        """Whether the detector sees the frame at `position` (0-based) in its task for sure (a task's
        last frame it sees too, which only the end of the task tells)."""
        return position % self.detect_every == 0

    def add(self, frames: list, size: tuple[int, int]) -> None:
        """The current task's next RGB frames (any size; larger than `input_size` they are scaled
        down), or callables that make one (called only for the frames the detector sees), boxes
        wanted in `size` pixels (the task video's). The latest frame is held back until more come or
        the task ends (a task's last frame is always detected)."""
        self._size = size
        frames = self._held + list(frames)
        self._held = frames[-1:]
        self._step(frames[:-1], last=False)

    def end_task(self) -> list[list[dict]]:
        """The boxes of every frame added since the previous call, one list per frame."""
        held, self._held = self._held, []
        self._step(held, last=True)
        self._in_task = 0
        return [self._boxes(*self._size, placed) for placed in self.tracks.end_task()]

    def annotate(self, frames: list[np.ndarray], size: tuple[int, int]) -> list[list[dict]]:
        """`frames` as one whole task: their boxes."""
        self.add(frames, size)
        return self.end_task()

    def _step(self, frames: list[np.ndarray], last: bool) -> None:
        chosen = [i for i in range(len(frames))
                  if (self._in_task + i) % self.detect_every == 0 or (last and i == len(frames) - 1)]
        found = self.detect(frames, chosen, self._size)
        for index in range(len(frames)):
            self.tracks.step(found.get(index))
        self._in_task += len(frames)
        self.frames += len(frames)

    def state(self) -> dict:
        return self.tracks.state()

    def resume(self, state: dict | None) -> None:
        self.tracks = Tracks.from_state(state, self.tracking)
        self._held, self._in_task = [], 0

    def number_tracks_from(self, first_id: int) -> None:
        """New tracks get ids from `first_id` on (a part of a long upload has its own range)."""
        self.tracks.next_id = max(self.tracks.next_id, first_id)

    def detect(self, frames: list[np.ndarray], chosen: list[int], size: tuple[int, int]) -> dict[int, list]:
        """The detector alone on `frames[i]` for each i in `chosen` (no tracks): i -> the project's
        detections on it, in `size` pixels, labelled as the project."""
        found: dict[int, list[Detection]] = {}
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
                found[index] = [dataclasses.replace(d.scaled(sx, sy), label=label)
                                for label, d in self.policy.keep(boxes)]
        self.detected += len(chosen)
        return found

    def _small(self, frame, size: tuple[int, int]) -> np.ndarray:
        frame = frame() if callable(frame) else frame
        target = self.input_size(size)
        if frame.shape[1] <= target[0] and frame.shape[0] <= target[1]:
            return np.ascontiguousarray(frame)
        return cv2.resize(frame, target, interpolation=cv2.INTER_AREA)

    def _boxes(self, width: int, height: int, placed: list[Placed]) -> list[dict]:
        boxes = []
        for box in sorted(placed, key=lambda p: (-p.detection.score, p.track))[:self.policy.max_boxes]:
            d = box.detection
            x1, y1 = max(0, round(d.x1)), max(0, round(d.y1))
            x2, y2 = min(width, round(d.x2)), min(height, round(d.y2))
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append(auto_box(len(boxes), d.label, self.policy.colors[d.label], x1, y1, x2 - x1, y2 - y1,
                                  d.score, self.version, self.model, box.track))
        self.boxes += len(boxes)
        return boxes

    def report(self) -> dict:
        """The run's counts for its job's result (what the status API and the jobs page show): the
        detections left out because the project lacks their labels, by detector label."""
        return {"model": self.model, "frames": self.frames, "boxes": self.boxes,
                "labels_left_out": dict(self.policy.left_out)}

    def summary(self) -> dict:
        calls = self.detector.calls - self._calls_at_start if hasattr(self.detector, "calls") else None
        fields = annotation_upload_fields(self.model, self.frames, self.boxes, dict(self.policy.left_out),
                                          detected=self.detected, tracks=self.tracks.next_id - 1,
                                          rekognition_calls=calls)
        if self.policy.left_out:
            log.info("labels the project does not have were left out: %s", dict(self.policy.left_out))
        if "rekognitionCalls" in fields:
            log.info("%d billable Rekognition calls", fields["rekognitionCalls"])
        return fields
