"""Auto boxes linked into tracks over a whole upload: one integer id per object (issue 29).

The association and the motion model are `trackers`' ByteTrack (Roboflow, Apache-2.0): a Kalman
filter per track predicts where each box goes, IoU matching links the next detections to it. One
ByteTrack runs per label (a person's track never becomes a car's); ids come from one counter for the
whole upload, given to a track on its first box.

`Tracks.step(detections)` is one sampled frame: its detections, or None for a frame the detector
did not see (the tracks' predicted boxes stand in). `Tracks.end_task()` returns every stepped frame's
boxes since the last call, cleaned up:
- a predicted box is kept only while its track is detected again later in the task (the frames
  between two detections, and holes of at most `max_gap` frames inside a track's life, are
  filled; a track that ends leaves no predicted tail). The caller detects each task's last frame,
  so no frame of a task is left undecided;
- a track seen on one detected frame only is dropped when that box scores under `single_score`
  (the flicker of a one-frame false box).
`state()` / `Tracks.from_state()` save and restore everything between two tasks (the ByteTrack
filters through the library's own `get_state` / `set_state`), so a resumed upload gives the same ids.

`python -m media_service.annotation.tracks DET.txt` tracks MOTChallenge detections (`det.txt`:
frame, -1, x, y, w, h, score, ...) and prints MOTChallenge results (frame, id, x, y, w, h, score,
-1, -1, -1), so the tracker can be scored on public MOT data.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import numpy as np

from media_service.detectors import Detection

DETECTED, PREDICTED = "detected", "predicted"


@dataclass(frozen=True)
class TrackSettings:
    """`max_gap`: frames a track may go undetected and still be filled (and live on);
    `single_score`: the score a box seen on one frame only needs to be kept; `min_score`: the
    lowest score a detection may have to spawn or continue a track (the detector's threshold);
    `min_iou`: the generalised IoU (-1..1) a detection needs with a track's predicted box to
    continue it."""
    max_gap: int = 4
    single_score: float = 0.6
    min_score: float = 0.0
    min_iou: float = 0.0


@dataclass
class Placed:
    """A box on one frame: its track, where it is, and how it came (detected or predicted)."""
    track: int
    detection: Detection
    how: str


@dataclass
class _Track:
    label: str
    hits: int = 0           # detected frames so far (this upload)
    best: float = 0.0       # its best detected score


def _new_tracker(settings: TrackSettings):
    from trackers import ByteTrackTracker
    from trackers.utils.iou import GIoU
    # frame_rate 30 makes lost_track_buffer a count of our frames. Every detection scored at least
    # `min_score` is "high" and spawns a track (the detector has cut at its threshold already).
    # Generalised IoU (0 for boxes that just touch, below 0 for boxes apart) at 0 or more: a small
    # object that moved about its width between two detections keeps its track (plain IoU at 0.1
    # split vtest's pedestrians at 5 fps into twice as many tracks), and a crowd at 25 fps keeps
    # its ids (GIoU -0.35 lost 0.05-0.15 IDF1 on TUD): bench/README.md.
    return ByteTrackTracker(lost_track_buffer=settings.max_gap, frame_rate=30.0,
                            track_activation_threshold=settings.min_score, minimum_consecutive_frames=1,
                            minimum_iou_threshold=settings.min_iou, high_conf_det_threshold=settings.min_score,
                            iou=GIoU())


def _xyxy(found: list[Detection]) -> np.ndarray:
    return np.array([(d.x1, d.y1, d.x2, d.y2) for d in found], np.float32).reshape(-1, 4)


def _detections(found: list[Detection]):
    """supervision's Detections, each row carrying its index in `found`."""
    import supervision as sv
    return sv.Detections(xyxy=_xyxy(found), confidence=np.array([d.score for d in found], np.float32),
                         data={"index": np.arange(len(found))})


@dataclass
class Tracks:
    settings: TrackSettings = field(default_factory=TrackSettings)
    next_id: int = 1
    frame: int = 0                      # frames stepped since the upload began
    tracks: dict[int, _Track] = field(default_factory=dict)
    trackers: dict = field(default_factory=dict)  # label -> ByteTrackTracker
    pending: list[list[Placed]] = field(default_factory=list)  # this task's frames so far

    def step(self, detections: list[Detection] | None) -> None:
        """One frame: what the detector found on it, or None when it was not detected."""
        placed: list[Placed] = []
        labels = sorted({d.label for d in detections or ()} | set(self.trackers))
        for label in labels:
            tracker = self.trackers.setdefault(label, _new_tracker(self.settings))
            found = [d for d in detections or () if d.label == label] if detections is not None else []
            placed += self._update(tracker, label, found)
        self.pending.append(placed)
        self.frame += 1

    def _update(self, tracker, label: str, found: list[Detection]) -> list[Placed]:
        result = tracker.update(_detections(found))
        spawned = iter(t for t in tracker.tracks if t.tracker_id == -1)
        placed, hit = [], set()
        for index, track_id in zip(result.data.get("index", ()), result.tracker_id):
            detection = found[int(index)]
            if track_id == -1:  # a new track (every detection spawns one): its id now, from our counter
                tracklet = next(spawned, None)
                if tracklet is None or not np.allclose(tracklet.get_state_bbox(), _xyxy([detection])[0]):
                    raise RuntimeError("trackers' ByteTrack did not spawn a track where expected")
                tracklet.tracker_id = track_id = self.next_id
                self.tracks[track_id] = _Track(label)
                self.next_id += 1
            track = self.tracks[int(track_id)]
            track.hits, track.best = track.hits + 1, max(track.best, detection.score)
            hit.add(int(track_id))
            placed.append(Placed(int(track_id), detection, DETECTED))
        for tracklet in tracker.tracks:  # live tracks not seen on this frame: where the filter puts them
            if tracklet.tracker_id not in hit:
                track = self.tracks[tracklet.tracker_id]
                box = tracklet.get_state_bbox()
                placed.append(Placed(tracklet.tracker_id, Detection(*map(float, box), track.best, label), PREDICTED))
        alive = {t.tracker_id for t in tracker.tracks}
        for track_id in [i for i, t in self.tracks.items() if t.label == label and i not in alive]:
            del self.tracks[track_id]  # ended: its history stays in `pending` until the task ends
        return placed

    def end_task(self) -> list[list[Placed]]:
        """Every frame stepped since the last call, cleaned up (see the module's docstring)."""
        first = self.frame - len(self.pending)
        last_hit: dict[int, int] = {}
        hits: dict[int, list[Placed]] = {}
        for number, frame in enumerate(self.pending, first):
            for box in frame:
                if box.how == DETECTED:
                    last_hit[box.track] = number
                    hits.setdefault(box.track, []).append(box)
        flicker = {track for track, boxes in hits.items() if len(boxes) == 1 and self._single(track, boxes[0])}
        cleaned = [[box for box in frame if box.track not in flicker
                    and (box.how == DETECTED or last_hit.get(box.track, -1) > number)]
                   for number, frame in enumerate(self.pending, first)]
        self.pending = []
        return cleaned

    def _single(self, track_id: int, box: Placed) -> bool:
        """Seen once in all the upload (not only in this task) and under `single_score`."""
        track = self.tracks.get(track_id)
        return (track is None or track.hits == 1) and box.detection.score < self.settings.single_score

    # -- saving between tasks ------------------------------------------------------------------
    def state(self) -> dict:
        """Everything `from_state` needs, in plain types (a job checkpoint); only between tasks."""
        if self.pending:
            raise RuntimeError("tracks are saved between tasks, not inside one")
        return {"next_id": self.next_id, "frame": self.frame,
                "tracks": [[i, t.label, t.hits, t.best] for i, t in self.tracks.items()],
                # a list, not a document keyed by label: labels may hold "." or "$"
                "trackers": [[label, [_tracklet_state(t) for t in tracker.tracks]]
                             for label, tracker in self.trackers.items()]}

    @classmethod
    def from_state(cls, state: dict | None, settings: TrackSettings) -> "Tracks":
        tracks = cls(settings)
        if not state:
            return tracks
        tracks.next_id, tracks.frame = int(state["next_id"]), int(state["frame"])
        tracks.tracks = {int(i): _Track(label, int(hits), float(best)) for i, label, hits, best in state["tracks"]}
        for label, saved in state["trackers"]:
            tracker = tracks.trackers[label] = _new_tracker(settings)
            tracker.tracks = [_tracklet_from_state(entry) for entry in saved]
        return tracks


_COUNTERS = ("tracker_id", "age", "time_since_update", "time_since_update_seconds",
             "number_of_successful_consecutive_updates")


def _tracklet_state(tracklet) -> dict:
    return {**{name: getattr(tracklet, name) for name in _COUNTERS},
            "filter": {name: value.tolist() for name, value in tracklet.state_estimator.get_state().items()}}


def _tracklet_from_state(entry: dict):
    from trackers.core.bytetrack.tracklet import ByteTrackTracklet
    tracklet = ByteTrackTracklet(np.zeros(4))
    tracklet.state_estimator.set_state({name: np.array(value, np.float64) for name, value in entry["filter"].items()})
    for name in _COUNTERS:
        setattr(tracklet, name, entry[name])
    return tracklet


# -- MOTChallenge in and out ---------------------------------------------------------------------

def track_mot(rows: np.ndarray, settings: TrackSettings) -> list[tuple]:
    """det.txt rows in, results rows (frame, id, x, y, w, h, score, -1, -1, -1) out; every frame
    from 1 to the last one named is one step (a frame without rows has no detections)."""
    tracks = Tracks(settings)
    last = int(rows[:, 0].max()) if len(rows) else 0
    for number in range(1, last + 1):
        frame = rows[rows[:, 0] == number]
        tracks.step([Detection(x, y, x + w, y + h, score, "object") for x, y, w, h, score in frame[:, 2:7]])
    results = []
    for number, frame in enumerate(tracks.end_task(), 1):
        for box in frame:
            d = box.detection
            results.append((number, box.track, d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1, d.score, -1, -1, -1))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m media_service.annotation.tracks",
                                     description="Track MOTChallenge detections (det.txt) and print "
                                                 "MOTChallenge results on standard output.")
    parser.add_argument("det", help="det.txt: frame, -1, x, y, w, h, score[, ...] per line")
    parser.add_argument("--max-gap", type=int, default=TrackSettings.max_gap)
    parser.add_argument("--single-score", type=float, default=TrackSettings.single_score)
    parser.add_argument("--min-score", type=float, default=TrackSettings.min_score)
    args = parser.parse_args(argv)
    try:
        rows = np.loadtxt(args.det, delimiter=",", ndmin=2)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.det}: {exc}", file=sys.stderr)
        return 2
    if rows.size and rows.shape[1] < 7:
        print(f"{args.det}: a MOTChallenge det.txt has at least 7 columns, this one {rows.shape[1]}", file=sys.stderr)
        return 2
    settings = TrackSettings(args.max_gap, args.single_score, args.min_score)
    for row in track_mot(rows[rows[:, 6] >= args.min_score] if rows.size else rows, settings):
        print(f"{row[0]},{row[1]},{row[2]:.2f},{row[3]:.2f},{row[4]:.2f},{row[5]:.2f},{row[6]:.4f},-1,-1,-1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
