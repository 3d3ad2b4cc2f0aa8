"""Benchmark: adaptive sampling against timestamp sampling (issue 30), in one run.

    .venv/bin/python -m bench.bench_sampling [--seconds 60] [--rate 5] [--repeat 3]

1. Frames kept and coverage, by the media package alone, on four clips:
   - a still scene with events: vtest.avi's real fixed camera held still (sensor noise of sigma 3)
     for 25 s of every 30 s, the real footage playing for the other 5 s (2 minutes, 4 events);
   - the bench scene: a pan and zoom over a texture with faces entering (1280x720, 10 s);
   - Big Buck Bunny, 5.3 s of 720p animation with a moving camera (../shared/media);
   - vtest.avi whole: people walking past a fixed camera, 80 s.
   Coverage: of the people tracks lasting 1 s or more (tests/still_scenes.py's reference, found on
   every frame of vtest.avi), how many have a box on a kept frame (for the bench scene, its faces).
2. Cost through the service (request to status 1, a child process each), timestamp then adaptive
   on the same clip: bench_pipeline's 1080p 30 fps testsrc2 clip of --seconds (everything moves, so
   every frame is kept and only the judging costs), and the still scene (fewer frames to encode).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import video_processor as vp  # noqa: E402
from bench.bench_pipeline import make_clip  # noqa: E402
from tests.faces import make_face_clip  # noqa: E402
from tests.real_footage import real_clip_people  # noqa: E402
from tests.still_scenes import Track, coverage, make_still_with_events, people_tracks  # noqa: E402

EVENTS = [101, 301, 501, 701]


def kept_frames(path: Path, rate: int) -> tuple[list[int], int]:
    info = vp.probe_video(path, 9999, 9999)
    sampler = vp.Sampler(rate, "timestamp", info.average_fps)
    judge = vp.NearDuplicates(2.0)
    kept = [s.number for s, _ in vp.leave_out_near_duplicates(vp.decode_samples(path, sampler, info), judge)]
    return kept, sampler.sampled


def frames_table(work: Path, rate: int) -> list[dict]:
    tracks = people_tracks()
    rows = []
    still = work / "still.mp4"
    plays = make_still_with_events(still, EVENTS)
    shown = {n for n in plays if n}
    event_tracks = [Track({n: b for n, b in t.frames.items() if n in shown}) for t in tracks]
    kept, sampled = kept_frames(still, rate)
    rows.append(("still scene with events (vtest.avi held, 2 min)", kept, sampled,
                 coverage([t for t in event_tracks if t.frames], {plays[n - 1] for n in kept if plays[n - 1]})))
    scene = make_face_clip(work / "scene.mp4", frames=250, size=(1280, 720), fps=25, audio=False)
    kept, sampled = kept_frames(work / "scene.mp4", rate)
    faces = [Track({n: scene.boxes(n)[i] for n in range(1, 251) if len(scene.boxes(n)) > i}) for i in range(2)]
    rows.append(("bench scene (pan and zoom, 1280x720, 10 s)", kept, sampled, coverage(faces, set(kept))))
    kept, sampled = kept_frames(ROOT.parent / "shared" / "media" / "bbb-720p-25fps.mp4", rate)
    rows.append(("Big Buck Bunny (720p, moving camera, 5.3 s)", kept, sampled, None))
    kept, sampled = kept_frames(real_clip_people(), rate)
    rows.append(("vtest.avi (people walking, 80 s)", kept, sampled, coverage(tracks, set(kept))))
    return [{"clip": name, "sampled": sampled, "kept": len(kept),
             "fewer_pct": round(100 - 100 * len(kept) / sampled, 1),
             "tracks_covered": f"{c[0]}/{c[1]}" if c else None} for name, kept, sampled, c in rows]


def service_seconds(work: Path, clip: Path, rate: int, mode: str) -> float:
    """Request to status 1 in a fresh service of its own (folder, embedded mongod) in a child process."""
    folder = work / f"{clip.stem}-{mode}"
    folder.mkdir(parents=True)
    os.link(clip, folder / clip.name)
    env = {**os.environ, "CONTENT_SAMPLING_MODE": mode}
    out = subprocess.run([sys.executable, "-m", "bench.service_run", str(folder), f"./{clip.name}", "0", str(rate)],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == 1, result
    return result["seconds"]


def cost(work: Path, clip: Path, rate: int, repeat: int) -> dict:
    """Timestamp and adaptive runs alternated `repeat` times; the ratio of the medians."""
    times = {"timestamp": [], "adaptive": []}
    for attempt in range(repeat):
        for mode in times:
            times[mode].append(service_seconds(work / f"{attempt}", clip, rate, mode))
    timestamp, adaptive = statistics.median(times["timestamp"]), statistics.median(times["adaptive"])
    return {"clip": clip.name, "timestamp_s": [round(t, 2) for t in times["timestamp"]],
            "adaptive_s": [round(t, 2) for t in times["adaptive"]], "ratio_of_medians": round(adaptive / timestamp, 3)}


def judging_ms(clip: Path, rate: int) -> float:
    """CPU milliseconds the near-duplicate judge spends on one sampled frame of `clip`."""
    info = vp.probe_video(clip, 9999, 9999)
    frames = [s.frame for s, _ in vp.decode_samples(clip, vp.Sampler(rate, "timestamp", info.average_fps), info)]
    judge = vp.NearDuplicates(2.0)
    started = time.process_time()
    for number, frame in enumerate(frames):
        judge.is_new(frame, number / rate)
    return 1000 * (time.process_time() - started) / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60, help="length of the 1080p testsrc2 clip")
    parser.add_argument("--rate", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="service runs of each mode, alternated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for row in frames_table(work, args.rate):
            print(json.dumps(row))
        make_clip(work / "moving.mp4", args.seconds)
        print(json.dumps({"judging_cpu_ms_per_frame_1080p": round(judging_ms(work / "moving.mp4", args.rate), 3)}))
        for clip in ("moving.mp4", "still.mp4"):
            print(json.dumps(cost(work, work / clip, args.rate, args.repeat)))


if __name__ == "__main__":
    main()
