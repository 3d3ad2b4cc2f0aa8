"""A customer's Darknet YOLO model (`.cfg` + `.weights` + a labels file) through OpenCV DNN.

`cv2.dnn.readNetFromDarknet` exists in OpenCV 4.x only (5.x dropped it), which is why the service
pins opencv-python 4.x. The input size is the `.cfg`'s `[net] width/height`; frames are stretched to
it (no letterbox, as the old service did) and scaled to 0..1 RGB. OpenCV's `[yolo]`/`[region]` layer
already decodes the raw outputs: per candidate box a row `cx, cy, w, h` (ratios of the frame),
objectness, then objectness x class probability for each class. Each box keeps its best class
(score = objectness x class probability), boxes under the threshold are dropped, then non-maximum
suppression runs per class. Class names are renamed as the old service did (`labels.darknet_label`).
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import cv2
import numpy as np

from media_service.detectors import Detection
from media_service.detectors.labels import darknet_label
from media_service.detectors.opencv_dnn import OpenCvDnnDetector
from media_service.errors import DetectorMisconfigured

log = logging.getLogger(__name__)

_OUTPUT_SECTIONS = {"yolo", "region"}


def parse_cfg(text: str) -> list[tuple[str, dict[str, str]]]:
    """A Darknet `.cfg` as (section name, options) in file order (sections repeat, so no configparser)."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().lower(), {}))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def _without_layer_threshold(text: str) -> str:
    """The `.cfg` with `thresh=0` in each [yolo]/[region] section: OpenCV's layer otherwise zeroes
    every class score under its own `thresh` (0.2 by default), hiding scores between a lower
    configured threshold and 0.2. The thresholds are applied here instead."""
    out, section = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip().lower()
            out.append(line)
            if section in _OUTPUT_SECTIONS:
                out.append("thresh=0")
            continue
        if section in _OUTPUT_SECTIONS and re.match(r"\s*thresh\s*=", line):
            continue  # replaced by the line added under the section header
        out.append(line)
    return "\n".join(out) + "\n"


def weights_needed(sections: list[tuple[str, dict[str, str]]]) -> int | None:
    """How many float32 values the `.weights` file must hold for this cfg (Darknet stores, per
    convolutional layer: biases, then scales, rolling means and variances when batch-normalized,
    then the kernels), following the channel count through the layers; None when a layer type is
    not understood here (then the file is not checked)."""
    channels = [int(options.get("channels", 3)) for section, options in sections[:1]
                if section in ("net", "network")]
    if not channels:
        return None
    out: list[int] = []  # output channels of each layer after [net]
    total = 0
    try:
        for index, (section, options) in enumerate(sections[1:]):
            previous = out[-1] if out else channels[0]
            if section in ("convolutional", "conv"):
                filters, size = int(options.get("filters", 1)), int(options.get("size", 1))
                groups = int(options.get("groups", 1))
                bn = 3 * filters if int(options.get("batch_normalize", 0)) else 0
                total += filters + bn + filters * (previous // groups) * size * size
                out.append(filters)
            elif section == "route":
                layers = [int(v) for v in options["layers"].split(",") if v.strip()]
                width = sum(out[v if v >= 0 else index + v] for v in layers)
                out.append(width // int(options.get("groups", 1)))
            elif section == "reorg":
                stride = int(options.get("stride", 1))
                reverse = int(options.get("reverse", 0))
                out.append(previous // (stride * stride) if reverse else previous * stride * stride)
            elif section in ("shortcut", "upsample", "maxpool", "max", "avgpool", "avg", "dropout", "yolo",
                             "region", "scale_channels", "sam", "softmax", "soft", "cost", "local_avgpool"):
                out.append(previous)
            else:
                return None
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        return None
    return total


def _check_weights(weights: bytes, sections, config_file: Path, weight_file: Path) -> None:
    """Refuse a `.weights` file too short for the cfg (OpenCV would read past its end silently)."""
    if len(weights) < 16:
        raise DetectorMisconfigured(f"Darknet: the weights file {weight_file} is too short to be a .weights file")
    major, minor = (int(v) for v in np.frombuffer(weights[:8], "<i4"))
    header = 20 if major * 10 + minor >= 2 else 16  # major, minor, revision, then `seen` (64-bit since 0.2)
    needed = weights_needed(sections)
    if needed is None:
        log.info("Darknet: not checking the size of %s (a layer type of %s not counted)", weight_file, config_file)
        return
    present = (len(weights) - header) // 4
    if present < needed:
        raise DetectorMisconfigured(f"Darknet: the weights file {weight_file} holds {present} weights but "
                                    f"{config_file} needs {needed} (truncated, or not this cfg's weights)")
    if present > needed:
        log.warning("Darknet: the weights file %s holds %d weights, %s uses the first %d", weight_file, present,
                    config_file, needed)


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise DetectorMisconfigured(f"Darknet: {what} file missing: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DetectorMisconfigured(f"Darknet: cannot read the {what} file {path}: {exc}") from exc


class Darknet(OpenCvDnnDetector):
    """A Darknet YOLO model (v2 `[region]`, v3/v4 `[yolo]` heads) on the CPU through OpenCV DNN.

    `config_file` (.cfg), `weight_file` (.weights), `labels_file` (one class name per line, in class
    order); `objectness_confidance` (sic, the old config's key): the default minimum score 0..1;
    `nms_threshold`: the IoU above which a lower-scored box of the same class is dropped.
    `input_size` is (width, height) from the cfg, or `net_size` when given (the old config's
    default_net_width/default_net_height); `labels` are the renamed class names.
    """

    name = "darknet"

    def __init__(self, config_file: str | Path, weight_file: str | Path, labels_file: str | Path,
                 objectness_confidance: float = 0.5, nms_threshold: float = 0.4, batch_size: int = 8,
                 net_size: tuple[int, int] | None = None):
        config_file, weight_file, labels_file = Path(config_file), Path(weight_file), Path(labels_file)
        cfg_bytes = _read(config_file, "config")
        weights = _read(weight_file, "weights")
        names = [line.strip() for line in _read(labels_file, "labels").decode("utf-8", "replace").splitlines()]
        names = [name for name in names if name]
        try:
            cfg_text = cfg_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise DetectorMisconfigured(f"Darknet: the config file {config_file} is not a text .cfg") from None
        sections = parse_cfg(cfg_text)
        net_options = next((options for section, options in sections if section in ("net", "network")), None)
        if net_options is None:
            raise DetectorMisconfigured(f"Darknet: no [net] section in the config file {config_file}")
        try:
            self.input_size = (int(net_options["width"]), int(net_options["height"]))
        except (KeyError, ValueError):
            raise DetectorMisconfigured(f"Darknet: [net] width/height missing or not integers in {config_file}") \
                from None
        if net_size and all(net_size):
            self.input_size = (int(net_size[0]), int(net_size[1]))
        if min(self.input_size) <= 0:
            raise DetectorMisconfigured(f"Darknet: [net] width/height must be positive in {config_file}")
        heads = [options for section, options in sections if section in _OUTPUT_SECTIONS]
        if not heads:
            raise DetectorMisconfigured(f"Darknet: no [yolo] or [region] layer in the config file {config_file}")
        classes = {options.get("classes", "20") for options in heads}  # Darknet's default is 20
        if not names:
            raise DetectorMisconfigured(f"Darknet: the labels file {labels_file} has no names")
        if classes != {str(len(names))}:
            raise DetectorMisconfigured(f"Darknet: {config_file} has classes={','.join(sorted(classes))} but the "
                                        f"labels file {labels_file} has {len(names)} names")
        _check_weights(weights, sections, config_file, weight_file)
        try:
            net = cv2.dnn.readNetFromDarknet(np.frombuffer(_without_layer_threshold(cfg_text).encode(), np.uint8),
                                             np.frombuffer(weights, np.uint8))
            self.output_names = list(net.getUnconnectedOutLayersNames())
        except cv2.error as exc:
            raise DetectorMisconfigured(f"Darknet: cannot load {weight_file} with {config_file} "
                                        f"(wrong or truncated weights?): {str(exc).strip()}") from exc
        if net.empty() or not self.output_names:
            raise DetectorMisconfigured(f"Darknet: {config_file} with {weight_file} gave an empty network")
        super().__init__(net, objectness_confidance, batch_size, "Darknet")
        self.class_names = tuple(names)
        self.labels = tuple(dict.fromkeys(darknet_label(name) for name in names))
        self.nms_threshold = nms_threshold
        digest = hashlib.sha256(cfg_bytes + weights).hexdigest()[:12]
        self.version = f"{weight_file.name} (sha256 {digest})"

    def _blob(self, chunk: list[np.ndarray]) -> np.ndarray:
        # Frames are RGB already, as Darknet was trained: no channel swap.
        return cv2.dnn.blobFromImages(chunk, 1 / 255.0, self.input_size, (0, 0, 0), swapRB=False, crop=False)

    def _forward(self):
        return self.net.forward(self.output_names)

    def _decode_batch(self, outputs, chunk: list[np.ndarray], threshold: float) -> list[list[Detection]]:
        width = 5 + len(self.class_names)
        # One output per head: (boxes, 5 + classes) for one frame, (frames, boxes, ...) for several.
        rows = np.concatenate([out.reshape(len(chunk), -1, width) for out in outputs], axis=1)
        return [self._decode(frame_rows, frame.shape[1], frame.shape[0], threshold)
                for frame, frame_rows in zip(chunk, rows)]

    def _decode(self, rows: np.ndarray, width: int, height: int, threshold: float) -> list[Detection]:
        scores_all = rows[:, 5:]  # objectness x class probability, from OpenCV's yolo layer
        class_ids = scores_all.argmax(axis=1)
        scores = scores_all[np.arange(len(rows)), class_ids]
        keep = np.nonzero(scores >= threshold)[0]
        if keep.size == 0:
            return []
        cx, cy = rows[keep, 0] * width, rows[keep, 1] * height
        bw, bh = rows[keep, 2] * width, rows[keep, 3] * height
        x1, y1 = np.clip(cx - bw / 2, 0, width), np.clip(cy - bh / 2, 0, height)
        x2, y2 = np.clip(cx + bw / 2, 0, width), np.clip(cy + bh / 2, 0, height)
        rects = [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in zip(x1, y1, x2, y2)]
        kept = cv2.dnn.NMSBoxesBatched(rects, scores[keep].astype(float).tolist(),
                                       class_ids[keep].astype(int).tolist(), threshold, self.nms_threshold)
        detections = []
        for i in sorted(np.array(kept, dtype=int).reshape(-1), key=lambda i: -scores[keep][i]):
            if x2[i] > x1[i] and y2[i] > y1[i]:
                label = darknet_label(self.class_names[class_ids[keep[i]]])
                detections.append(Detection(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]),
                                            float(scores[keep[i]]), label))
        return detections
