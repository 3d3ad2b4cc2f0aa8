"""YOLOX-Nano (COCO objects) through onnxruntime, the default object detector of auto-annotation.

The ONNX file ships inside this package (`models/yolox_nano.onnx`, Apache-2.0; `models/NOTICE`
says where it came from) and is checked against its pinned SHA-256 each time it loads.

The file holds YOLOX's raw head, one row per anchor point of the three grids (strides 8, 16, 32):
`dx, dy, log w, log h` then objectness and the 80 class probabilities (sigmoids applied). A box's
centre is `(grid cell + d) * stride`, its size `exp(log size) * stride`, its score objectness x
class probability. Input: BGR pixels 0..255, the frame scaled to fit `input_size` and padded at the
bottom right with grey 114 (YOLOX's letterbox). The graph accepts any height and width that are
multiples of 32, so a wide frame is padded only to the next multiple of 32 (416 x 256 for 16:9:
the same pixels of picture as the 416 x 416 square, 40% less work).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np

from media_service.detectors import BatchDetector, Detection
from media_service.detectors.labels import COCO_LABELS
from media_service.errors import DetectorError, DetectorMisconfigured

log = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).parent / "models" / "yolox_nano.onnx"
MODEL_SHA256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"
STRIDES = (8, 16, 32)
PAD_VALUE = 114


def load_checked(path: Path, sha256: str) -> bytes:
    """The model file's bytes, refused unless they hash to `sha256`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DetectorMisconfigured(f"YOLOX-Nano: cannot read the model file {path}: {exc}") from exc
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise DetectorMisconfigured(f"YOLOX-Nano: the model file {path} has SHA-256 {found}, expected {sha256} "
                                    "(damaged or replaced; reinstall the package)")
    return data


def _session(model: bytes, threads: int):
    import onnx
    import onnxruntime

    graph = onnx.load_from_string(model)
    # The file fixes 1x3x416x416; any multiple of 32 runs (the graph is convolutional).
    for dim, name in zip(graph.graph.input[0].type.tensor_type.shape.dim, ("B", None, "H", "W")):
        if name:
            dim.dim_param = name
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "N"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


class YoloxNano(BatchDetector):
    """COCO objects (80 classes, the same names as SSD MobileNet's) from YOLOX-Nano.

    `threshold`: the default minimum score; `nms_threshold`: the IoU above which a lower-scored box
    is dropped (whatever its class); `input_size`: the longer side the frame is scaled to (416, the
    size the model was trained at); `threads`: onnxruntime threads (one: type 1 detects beside the
    encoder). Frames run one at a time (the graph's batch is 1).
    """

    name = "yolox_nano"
    labels = COCO_LABELS

    def __init__(self, threshold: float = 0.5, nms_threshold: float = 0.45, input_size: int = 416,
                 threads: int = 1, model_path: Path | None = None, sha256: str = MODEL_SHA256):
        path = Path(model_path or MODEL_PATH)
        self.session = _session(load_checked(path, sha256), threads)
        self.input_name = self.session.get_inputs()[0].name
        self.threshold, self.nms_threshold = threshold, nms_threshold
        self.input_size = input_size
        self.version = f"yolox_nano ({path.name} sha256 {sha256[:12]})"
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        """Objects in an RGB image, scored at least `threshold` (default: the configured one)."""
        threshold = self.threshold if threshold is None else threshold
        blob, ratio = letterbox(rgb, self.input_size)
        try:
            (rows,) = self.session.run(None, {self.input_name: blob})
        except Exception as exc:
            raise DetectorError(f"YOLOX-Nano failed: {exc}") from exc
        grid, stride = self._grid(blob.shape[2], blob.shape[3])
        return decode(rows[0], grid, stride, ratio, rgb.shape[1], rgb.shape[0], threshold, self.nms_threshold)

    def _grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if (height, width) not in self._grids:
            self._grids[(height, width)] = anchor_grid(height, width)
        return self._grids[(height, width)]


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """(1x3xHxW float32 BGR blob, scale): the frame scaled so its longer side is `size`, padded
    at the bottom and right to multiples of 32 with grey 114."""
    height, width = rgb.shape[:2]
    ratio = min(size / height, size / width)
    scaled_w, scaled_h = max(1, int(width * ratio)), max(1, int(height * ratio))
    padded_h, padded_w = -(-scaled_h // 32) * 32, -(-scaled_w // 32) * 32
    canvas = np.full((padded_h, padded_w, 3), PAD_VALUE, np.uint8)
    canvas[:scaled_h, :scaled_w] = cv2.resize(rgb, (scaled_w, scaled_h), interpolation=cv2.INTER_LINEAR)
    blob = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # RGB -> BGR, HWC -> NCHW
    return np.ascontiguousarray(blob), ratio


def anchor_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each output row's grid cell (x, y) and stride, in the graph's order: stride 8's cells row
    by row, then 16's, then 32's."""
    cells, strides = [], []
    for stride in STRIDES:
        ys, xs = np.mgrid[0:height // stride, 0:width // stride]
        cells.append(np.stack((xs.ravel(), ys.ravel()), axis=1))
        strides.append(np.full(xs.size, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]


def decode(rows: np.ndarray, grid: np.ndarray, stride: np.ndarray, ratio: float, width: int, height: int,
           threshold: float, nms_threshold: float) -> list[Detection]:
    """Raw head rows to boxes in the frame's pixels: each row's best class, scored objectness x
    class probability, kept at `threshold` or above, then non-maximum suppression across classes
    (as YOLOX's own demo: one object gets one box, not a car and a truck on the same place)."""
    if rows.shape[0] != grid.shape[0]:
        raise DetectorError(f"YOLOX-Nano: {rows.shape[0]} output rows for a grid of {grid.shape[0]}")
    classes = rows[:, 5:].argmax(axis=1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + classes]
    keep = scores >= threshold
    if not keep.any():
        return []
    rows, classes, scores, grid, stride = rows[keep], classes[keep], scores[keep], grid[keep], stride[keep]
    centres = (rows[:, :2] + grid) * stride / ratio
    sizes = np.exp(rows[:, 2:4]) * stride / ratio
    x1y1 = np.clip(centres - sizes / 2, 0, (width, height))
    x2y2 = np.clip(centres + sizes / 2, 0, (width, height))
    rects = np.concatenate((x1y1, x2y2 - x1y1), axis=1).tolist()
    kept = cv2.dnn.NMSBoxes(rects, scores.tolist(), threshold, nms_threshold)
    return [Detection(float(x1y1[i, 0]), float(x1y1[i, 1]), float(x2y2[i, 0]), float(x2y2[i, 1]),
                      float(scores[i]), COCO_LABELS[int(classes[i])])
            for i in np.array(kept, dtype=int).reshape(-1)]
