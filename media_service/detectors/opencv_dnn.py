"""What the OpenCV DNN back ends (SSD MobileNet, Darknet) share: a loaded `cv2.dnn.Net` on the CPU,
run on a batch of frames at a time, one forward pass at a time."""
from __future__ import annotations

import threading
from typing import Sequence

import cv2
import numpy as np

from media_service.detectors import BatchDetector, Detection
from media_service.errors import DetectorError


class OpenCvDnnDetector(BatchDetector):
    """A subclass loads its net, calls `__init__`, and says how frames become the net's input
    (`_blob`), which outputs it reads (`_forward`) and how they become boxes (`_decode_batch`)."""

    def __init__(self, net, threshold: float, batch_size: int, model: str):
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.net = net
        self.threshold = threshold
        self.batch_size = max(1, batch_size)
        self._model = model  # for error messages
        self._lock = threading.Lock()  # one cv2.dnn.Net runs one forward pass at a time

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        return self.detect_batch([rgb], threshold)[0]

    def detect_batch(self, frames: Sequence[np.ndarray], threshold: float | None = None) -> list[list[Detection]]:
        threshold = self.threshold if threshold is None else threshold
        results: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = list(frames[start:start + self.batch_size])
            blob = self._blob(chunk)
            try:
                with self._lock:
                    self.net.setInput(blob)
                    outputs = self._forward()
            except cv2.error as exc:
                raise DetectorError(f"{self._model} failed: {str(exc).strip()}") from exc
            results.extend(self._decode_batch(outputs, chunk, threshold))
        return results

    def _blob(self, chunk: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _forward(self):
        return self.net.forward()

    def _decode_batch(self, outputs, chunk: list[np.ndarray], threshold: float) -> list[list[Detection]]:
        raise NotImplementedError
