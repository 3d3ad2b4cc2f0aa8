"""One corner convention for every box (`detectors.Corners`): (x1, y1) is the top-left corner and
(x2, y2) the bottom-right, for a detector's `Detection` and a dataset's label `Box` alike. A
detection written into a frame by auto-annotation and read back by a dataset build lands on the
same corners."""
from __future__ import annotations

import numpy as np

from media_service.annotation.annotator import Annotator
from media_service.annotation.policy import LabelPolicy
from media_service.config import load_settings
from media_service.datasets.labels import Box, frame_labels
from media_service.detectors import Corners, Detection


class OneBox:
    """A detector that always finds the same person."""
    name, version, labels = "one-box", "1", ("person",)

    def __init__(self, detection: Detection):
        self.detection = detection

    def detect_batch(self, frames, threshold=None):
        return [[self.detection] for _ in frames]


def test_a_detection_and_a_label_box_name_the_same_corners():
    detection, box = Detection(40, 30, 120, 90, 0.9, "person"), Box(40, 30, 120, 90, 0)
    assert isinstance(detection, Corners) and isinstance(box, Corners)
    assert (detection.width, detection.height, detection.area) == (box.width, box.height, box.area) == (80, 60, 4800)
    assert detection.clipped(100, 80) == Detection(40, 30, 100, 80, 0.9, "person")  # score and label kept
    assert box.clipped(100, 80) == Box(40, 30, 100, 80, 0)
    assert box.yolo_line(160, 120) == "0 0.500000 0.500000 0.500000 0.500000"


def test_a_detected_box_reaches_the_dataset_on_the_same_corners():
    settings = load_settings({})
    detection = Detection(40, 30, 120, 90, 0.9, "person")
    policy = LabelPolicy.build([{"label": "person"}], settings.annotation)
    annotator = Annotator(OneBox(detection), policy, 1, 640, 1)
    (frame_boxes,) = annotator.annotate([np.zeros((120, 160, 3), np.uint8)], (160, 120))
    assert [b["boundaries"]["x"] for b in frame_boxes] == [40]
    result = frame_labels(frame_boxes, [{"mainLabel": "person", "isEnabled": True}], 160, 120)
    (read_back,) = result.boxes
    assert (read_back.x1, read_back.y1, read_back.x2, read_back.y2) == (detection.x1, detection.y1, detection.x2,
                                                                        detection.y2)
