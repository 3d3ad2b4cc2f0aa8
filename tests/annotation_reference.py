"""Auto-annotation boxes as type 1 finds them, and as the same detector finds them on every
frame alone, with the measures that compare them (issues 20 and 29).

The bench scene is tests/faces.py's scene at 1920x1080 25 fps (the bench clip's scene), 100 frames.
Frames reach the detector as they do in request_type 1: decoded by the service's media package,
converted to RGB at the annotator's `input_size`, boxes in the clip's pixels. (Issue 20 kept the
boxes of that day's SSD MobileNet in tests/data/annotation_reference.json; issue 29 changed the
model, and the reference became the same detector on every frame.)
"""
from __future__ import annotations

from pathlib import Path

import video_processor as vp
from media_service.annotation.annotator import Annotator
from media_service.annotation.policy import LabelPolicy
from tests.faces import make_face_clip

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian opencv-doc (run_tests.sh)


def clip_path(name: str, work: Path) -> Path:
    """The clip's file: the scene is written into `work`; vtest.avi must be installed."""
    if name == "scene":
        path = work / "scene.mp4"
        if not path.exists():
            make_face_clip(path, frames=100, size=(1920, 1080), fps=25, audio=False)
        return path
    if not VTEST.is_file():
        raise FileNotFoundError(f"{VTEST} is missing: apt-get install opencv-doc (./run_tests.sh does)")
    return VTEST


def annotator_for(settings, labels: list[str] | None = None) -> Annotator:
    """An annotator as request_type 1 builds it, for a project that has `labels` (default: every
    label the detector knows, so nothing is left out)."""
    from media_service.annotation.handler import make_annotator
    from media_service.detectors.factory import annotation_detector
    detector = annotation_detector(settings)
    policy = LabelPolicy.build([{"label": label} for label in labels or detector.labels], settings.annotation)
    return make_annotator(detector, policy, 1, settings)


def boxes_of(annotator: Annotator, path: Path, rate: float, per_task: int = 0, limit: int = 0) -> list[dict]:
    """[{frame, label, box: [x, y, w, h], score, track}] for the clip's sampled frames (1-based
    numbers), cut into tasks of `per_task` frames (0: one task per batch, as before issue 29); at
    most `limit` sampled frames (0: all)."""
    info = vp.probe_video(path, 9999, 9999)
    size = (info.width, info.height)
    numbers, rgbs, found = [], [], []

    def flush(task_ends: bool) -> None:
        annotator.add(rgbs, size)
        rgbs.clear()
        if not task_ends:
            return
        for number, boxes in zip(numbers, annotator.end_task()):
            for box in boxes:
                b = box["boundaries"]
                found.append({"frame": number, "label": b["label"], "box": [b["x"], b["y"], b["w"], b["h"]],
                              "score": round(float(b["autoLable_confidance"]), 4), "track": box.get("trackId")})
        numbers.clear()

    for count, (sample, _) in enumerate(vp.decode_samples(path, vp.Sampler(rate, "timestamp", info.average_fps),
                                                          info), 1):
        numbers.append(sample.number)
        rgbs.append(vp.frame_to_rgb(sample.frame, *annotator.input_size(size)))
        if len(rgbs) == annotator.batch_size or (per_task and len(numbers) == per_task):
            flush(not per_task or len(numbers) == per_task)
        if count == limit:
            break
    flush(True)
    return found


def detector_boxes(annotator: Annotator, path: Path, rate: float, limit: int = 0) -> list[dict]:
    """What the same detector finds on every sampled frame alone (no tracks), as `boxes_of` gives it."""
    info = vp.probe_video(path, 9999, 9999)
    size = (info.width, info.height)
    found = []
    for count, (sample, _) in enumerate(vp.decode_samples(path, vp.Sampler(rate, "timestamp", info.average_fps),
                                                          info), 1):
        rgb = vp.frame_to_rgb(sample.frame, *annotator.input_size(size))
        for d in annotator.detect([rgb], [0], size)[0]:
            found.append({"frame": sample.number, "label": d.label, "score": d.score,
                          "box": [round(d.x1), round(d.y1), round(d.x2) - round(d.x1), round(d.y2) - round(d.y1)]})
        if count == limit:
            break
    return found


def iou(a, b) -> float:
    """Boxes as [x, y, w, h]."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def matched(found: list[dict], reference: list[dict], threshold: float = 0.5) -> int:
    """How many reference boxes a found box of the same frame and label covers at IoU >= threshold
    (each found box matches at most one, best IoU first)."""
    pairs = sorted(((iou(f["box"], r["box"]), i, j) for i, f in enumerate(found) for j, r in enumerate(reference)
                    if f["frame"] == r["frame"] and f["label"] == r["label"]), reverse=True)
    used_found, used_ref = set(), set()
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in used_found and j not in used_ref:
            used_found.add(i)
            used_ref.add(j)
    return len(used_ref)


def recall_precision(found: list[dict], reference: list[dict]) -> tuple[float, float]:
    hits = matched(found, reference)
    return (hits / len(reference) if reference else 1.0, hits / len(found) if found else 1.0)
