"""Benchmark: the privacy pipeline against `deface` (PyPI) on the same clips, in one run (issue 5).

    .venv/bin/python -m bench.bench_privacy [--seconds 6]

For a 720p and a 1080p clip of the test scene (scikit-image's astronaut, panned and scaled, a
second face entering half-way; tests/faces.py): runs `deface IN -o OUT` at its defaults (with
onnx installed it uses onnxruntime) and this service's pipeline at its configured defaults, and
reports frames per second (wall time, model loading included for both) and faces left: frames of
the output where CenterFace at full resolution and threshold 0.5 still finds a face.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from media_service.config import load_settings  # noqa: E402
from media_service.contract import PrivacyOutputs  # noqa: E402
from media_service.detectors.centerface import CenterFace  # noqa: E402
from media_service.privacy.job import blur_settings, make_detector  # noqa: E402
from media_service.privacy.pipeline import PrivacyPipeline  # noqa: E402
from tests.faces import make_face_clip  # noqa: E402


def faces_left(path: Path, judge: CenterFace) -> tuple[int, int]:
    """(frames with a face found, faces found) over every frame at full resolution."""
    frames_with, total = 0, 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            found = len(judge.detect(np.ascontiguousarray(frame.to_ndarray(format="rgb24"))))
            frames_with += found > 0
            total += found
    return frames_with, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    args = parser.parse_args()
    settings = load_settings()
    judge = CenterFace(threshold=0.5, threads=2)
    deface = Path(sys.executable).with_name("deface")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for width, height in ((1280, 720), (1920, 1080)):
            frames = int(args.seconds * 25)
            source = work / f"faces-{height}p.mp4"
            make_face_clip(source, frames=frames, size=(width, height), audio=False)

            started = time.perf_counter()
            subprocess.run([str(deface), str(source), "-o", str(work / f"deface-{height}p.mp4")],
                           check=True, capture_output=True)
            deface_s = time.perf_counter() - started

            started = time.perf_counter()
            pipeline = PrivacyPipeline(make_detector(settings), blur_settings(settings.privacy, settings.content),
                                       settings.content.max_width, settings.content.max_height)
            ours = PrivacyOutputs.for_source(source, work)
            pipeline.run(source, ours)
            ours_s = time.perf_counter() - started

            print(json.dumps({
                "clip": f"{width}x{height}", "frames": frames,
                "faces_in_source": faces_left(source, judge),
                "deface": {"fps": round(frames / deface_s, 2),
                           "frames_with_faces_left": faces_left(work / f"deface-{height}p.mp4", judge)[0]},
                "service": {"fps": round(frames / ours_s, 2),
                            "frames_with_faces_left": faces_left(ours.final, judge)[0],
                            "detect_every": settings.privacy.detect_every,
                            "detect_width": settings.privacy.detect_width},
                "speed_ratio": round(deface_s / ours_s, 2)}), flush=True)


if __name__ == "__main__":
    main()
