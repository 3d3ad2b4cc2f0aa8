"""Real pedestrian trajectories from motmetrics (TUD-Campus, TUD-Stadtmitte: MOTChallenge
`gt.txt`), made into noisy detections with a fixed seed, and IDF1 scoring with motmetrics.

motmetrics 1.4.0 calls `np.asfarray`, which NumPy 2.0 removed: `motmetrics()` puts it back for the
tests (the product never imports motmetrics).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# Noise (fixed seed): each true box is dropped with DROP, its corners jittered by JITTER of its
# size; FALSE_PER_FRAME false boxes on average appear at random places with low scores.
DROP, JITTER, FALSE_PER_FRAME = 0.15, 0.05, 0.6
SEQUENCE_SIZE = {"TUD-Campus": (640, 480), "TUD-Stadtmitte": (640, 480)}


def motmetrics():
    if not hasattr(np, "asfarray"):
        np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # removed in NumPy 2.0
    import motmetrics as mm
    return mm


def gt_path(sequence: str = "TUD-Campus") -> Path:
    return Path(motmetrics().__file__).parent / "data" / sequence / "gt.txt"


def read_mot(path: Path) -> np.ndarray:
    """MOTChallenge rows (frame, id, x, y, w, h, score, ...) as floats."""
    return np.loadtxt(path, delimiter=",", ndmin=2)


def noisy_detections(gt: np.ndarray, seed: int, size: tuple[int, int]) -> np.ndarray:
    """det.txt rows (frame, -1, x, y, w, h, score, -1, -1, -1) made from ground truth rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for frame, _, x, y, w, h, *_ in gt:
        if rng.random() < DROP:
            continue
        dx1, dy1, dx2, dy2 = rng.normal(0, JITTER, 4) * (w, h, w, h)
        rows.append((frame, -1, x + dx1, y + dy1, w + dx2 - dx1, h + dy2 - dy1, rng.uniform(0.55, 0.95), -1, -1, -1))
    for frame in np.unique(gt[:, 0]):
        for _ in range(rng.poisson(FALSE_PER_FRAME)):
            w, h = rng.uniform(30, 90), rng.uniform(60, 200)
            rows.append((frame, -1, rng.uniform(0, size[0] - w), rng.uniform(0, size[1] - h), w, h,
                         rng.uniform(0.5, 0.7), -1, -1, -1))
    rows.sort(key=lambda row: row[0])
    return np.array(rows)


def write_mot(rows, path: Path) -> Path:
    path.write_text("".join(",".join(f"{v:g}" if i not in (2, 3, 4, 5, 6) else f"{v:.2f}" for i, v in enumerate(r))
                            + "\n" for r in rows))
    return path


def idf1(gt: np.ndarray, tracked: np.ndarray) -> float:
    """IDF1 of tracked rows against ground truth rows (IoU 0.5), by motmetrics."""
    mm = motmetrics()
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame in np.unique(gt[:, 0]).astype(int):
        truth = gt[gt[:, 0] == frame]
        found = tracked[tracked[:, 0] == frame] if len(tracked) else np.empty((0, 6))
        distances = mm.distances.iou_matrix(truth[:, 2:6], found[:, 2:6], max_iou=0.5)
        accumulator.update(truth[:, 1].astype(int).tolist(), found[:, 1].astype(int).tolist(), distances,
                           frameid=frame)
    summary = mm.metrics.create().compute(accumulator, metrics=["idf1"], name="run")
    return float(summary["idf1"].iloc[0])
