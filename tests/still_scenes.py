"""Footage for adaptive sampling (issue 30), and how to tell whether the frames kept cover every object.

- `make_still_with_events`: a real fixed camera (vtest.avi, Debian's opencv-doc: pedestrians seen
  from above, 768x576, 10 fps) whose picture is held still, with sensor-like noise, for most of
  every half minute; for a few seconds each half minute the real footage plays (people walking
  through). Which source frame of vtest.avi each frame shows is returned, so the people's tracks in
  the reference below map onto it.
- The reference: every person the detector of that day found on every frame of vtest.avi
  (tests/data/vtest_people.json, written once by `python -m tests.still_scenes`), linked into tracks
  here by overlap from frame to frame (our own reference, independent of the service's tracker).
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.annotation_reference import iou
from tests.real_footage import real_clip_people

PEOPLE = Path(__file__).parent / "data" / "vtest_people.json"
VTEST_FPS = 10


def vtest_frames(numbers: set[int]) -> dict[int, np.ndarray]:
    """The frames of vtest.avi at `numbers` (1-based, in FFmpeg's order) as BGR."""
    import av
    with av.open(str(real_clip_people())) as container:
        return {number: frame.to_ndarray(format="bgr24")
                for number, frame in enumerate(container.decode(video=0), 1) if number in numbers}


def make_still_with_events(path: Path, event_starts: list[int], still_seconds: float = 25,
                           event_seconds: float = 5, noise: float = 3.0) -> list[int | None]:
    """Per event: the picture of vtest.avi frame `start` held for `still_seconds` (with Gaussian
    noise of sigma `noise` on every frame, as a sensor adds), then `event_seconds` of the real
    footage from `start`. Returns, for each frame of the clip (index = frame number - 1), the
    vtest.avi frame number it plays, or None for a held frame."""
    event_frames = round(event_seconds * VTEST_FPS)
    frames = vtest_frames({n for start in event_starts for n in range(start, start + event_frames)})
    height, width = frames[event_starts[0]].shape[:2]
    rng = np.random.default_rng(30)
    encoder = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                                "-s", f"{width}x{height}", "-r", str(VTEST_FPS), "-i", "-", "-c:v", "libx264",
                                "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(path)],
                               stdin=subprocess.PIPE)
    plays: list[int | None] = []
    for start in event_starts:
        held = frames[start].astype(np.float32)
        for _ in range(round(still_seconds * VTEST_FPS)):
            encoder.stdin.write(np.clip(held + rng.normal(0, noise, held.shape), 0, 255).astype(np.uint8).tobytes())
            plays.append(None)
        for number in range(start, start + event_frames):
            encoder.stdin.write(frames[number].tobytes())
            plays.append(number)
    encoder.stdin.close()
    assert encoder.wait() == 0
    return plays


@dataclass
class Track:
    frames: dict[int, list[int]]  # vtest.avi frame number: the box [x, y, w, h]

    @property
    def seconds(self) -> float:
        return (max(self.frames) - min(self.frames) + 1) / VTEST_FPS


def people_tracks(min_iou: float = 0.3, max_gap: int = 3) -> list[Track]:
    """The reference people of vtest.avi linked into tracks: each box joins the track whose last
    box (at most `max_gap` frames back) it overlaps most, greedily by overlap."""
    boxes = {int(number): found for number, found in json.loads(PEOPLE.read_text())["frames"].items()}
    tracks: list[Track] = []
    for number in sorted(boxes):
        open_tracks = [t for t in tracks if number - max(t.frames) <= max_gap]
        pairs = sorted(((iou(t.frames[max(t.frames)], box), i, j) for i, t in enumerate(open_tracks)
                        for j, box in enumerate(boxes[number])), reverse=True)
        taken_tracks, taken_boxes = set(), set()
        for overlap, i, j in pairs:
            if overlap < min_iou:
                break
            if i not in taken_tracks and j not in taken_boxes:
                open_tracks[i].frames[number] = boxes[number][j]
                taken_tracks.add(i)
                taken_boxes.add(j)
        tracks += [Track({number: box}) for j, box in enumerate(boxes[number]) if j not in taken_boxes]
    return tracks


def coverage(tracks: list[Track], kept_vtest_frames: set[int], min_seconds: float = 1.0) -> tuple[int, int]:
    """(covered, counted): of the tracks lasting at least `min_seconds`, how many have a box on a
    frame that was kept."""
    counted = [t for t in tracks if t.seconds >= min_seconds]
    return sum(1 for t in counted if kept_vtest_frames & t.frames.keys()), len(counted)


def main() -> None:
    """Detect the people on every frame of vtest.avi with today's default detector; store them."""
    import os

    import video_processor as vp
    from media_service.config import load_settings
    from tests.annotation_reference import annotator_for, boxes_of

    settings = load_settings(dict(os.environ))
    annotator = annotator_for(settings)
    found = boxes_of(annotator, real_clip_people(), VTEST_FPS)
    frames: dict[int, list] = {number: [] for number in range(1, vp.probe_video(real_clip_people(), 9999, 9999)
                                                              .frame_count + 1)}
    for box in found:
        if box["label"].lower() == "person":
            frames[box["frame"]].append(box["box"])
    PEOPLE.write_text(json.dumps({"detector": annotator.model, "label": "person", "frames": frames},
                                 separators=(",", ":")) + "\n")
    print(f"{sum(map(len, frames.values()))} people on {len(frames)} frames -> {PEOPLE}")


if __name__ == "__main__":
    main()
