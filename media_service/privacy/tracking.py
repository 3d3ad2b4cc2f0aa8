"""From detections on some frames to a box on every frame: tracks, interpolation and hold.

Detection runs every `detect_every` frames. Detections on successive detection frames are linked
into tracks (nearest box of similar size); between two detections of a track its box moves
linearly ("tracker"). When a face appears or disappears at a detection frame, the frames since
the previous detection (still buffered) are searched too, so the change is pinned to the frame
where it happened. Before a track's first and after its last detection its box is held for
`hold` frames, moving on as it moved ("held"), so a face missed for a frame or two is still
covered. A frame leaves the tracker once every detection that can affect it is known: memory
holds at most `detect_every + hold` frames.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from media_service.detectors import Detection


@dataclass(frozen=True)
class Region:
    """One area to hide on one frame: a box in the frame's own pixels (before padding), where it
    came from and which track it belongs to."""
    box: Detection
    origin: str   # detector | tracker | held
    track: int


@dataclass
class _Track:
    ident: int
    seen: list[tuple[int, Detection]] = field(default_factory=list)  # (frame index, face), in order

    @property
    def last(self) -> tuple[int, Detection]:
        return self.seen[-1]


def _centre_distance(a: Detection, b: Detection) -> float:
    """Distance between centres relative to the boxes' size: below ~1 is the same face moving."""
    size = max(a.x2 - a.x1, a.y2 - a.y1, b.x2 - b.x1, b.y2 - b.y1, 1.0)
    dx = (a.x1 + a.x2 - b.x1 - b.x2) / 2
    dy = (a.y1 + a.y2 - b.y1 - b.y2) / 2
    return (dx * dx + dy * dy) ** 0.5 / size


def _lerp(a: Detection, b: Detection, t: float) -> tuple[float, float, float, float]:
    return (a.x1 + (b.x1 - a.x1) * t, a.y1 + (b.y1 - a.y1) * t,
            a.x2 + (b.x2 - a.x2) * t, a.y2 + (b.y2 - a.y2) * t)


def _between(a: Detection, b: Detection, x1: float, y1: float, x2: float, y2: float) -> Detection:
    """A box placed between two detections, as sure as the less sure of them."""
    return Detection(x1, y1, x2, y2, min(a.score, b.score), a.label)


class FaceTracker:
    def __init__(self, detect_every: int, hold: int, max_jump: float = 1.0, redetect=None):
        """`redetect(payload)` searches a buffered frame: its faces, or None when detection failed."""
        self.detect_every = max(1, detect_every)
        self.hold = max(0, hold)
        self.max_gap = self.detect_every + self.hold  # frames a track may go undetected
        self.max_jump = max_jump
        self.tracks: list[_Track] = []
        self._next_id = 0
        self._pending: deque[list] = deque()  # [index, payload, whole frame?, detected?]
        self._last_detection = -1
        self.redetect = redetect

    def is_detection_frame(self, index: int) -> bool:
        return index % self.detect_every == 0

    def push(self, index: int, payload: Any, faces: list[Detection] | None,
             whole_frame: bool = False) -> Iterator[tuple[int, Any, list[Region], bool]]:
        """Add frame `index` (with `faces` when it was a detection frame); yield the frames now
        decided, in order, each with its regions and whether the whole frame must be hidden."""
        if faces is not None:
            if self.redetect is not None and self._changes(index, faces):
                self._search_since_last_detection()
            self._link(index, faces)
            self._last_detection = index
        self._pending.append([index, payload, whole_frame, faces is not None])
        while self._pending and self._pending[0][0] + self.max_gap <= self._last_detection:
            yield self._release()

    def finish(self) -> Iterator[tuple[int, Any, list[Region], bool]]:
        while self._pending:
            yield self._release()

    def _release(self) -> tuple[int, Any, list[Region], bool]:
        index, payload, whole, _ = self._pending.popleft()
        regions = [r for r in (self._region(track, index) for track in self.tracks) if r is not None]
        self.tracks = [t for t in self.tracks if t.last[0] + self.max_gap >= index]
        for track in self.tracks:  # later frames need the two detections at or before them, at most
            while len(track.seen) >= 3 and track.seen[2][0] <= index:
                track.seen.pop(0)
        return index, payload, regions, whole

    def _match(self, index: int, faces: list[Detection]) -> tuple[list[_Track], dict[int, int]]:
        """Active tracks, and which face (by position) continues which of them (greedy, nearest first)."""
        candidates = [t for t in self.tracks if index - t.last[0] <= self.max_gap]
        pairs = sorted((_centre_distance(t.last[1], f), n, m)
                       for n, t in enumerate(candidates) for m, f in enumerate(faces))
        matched: dict[int, int] = {}
        for distance, n, m in pairs:
            if distance <= self.max_jump and n not in matched and m not in matched.values():
                matched[n] = m
        return candidates, matched

    def _changes(self, index: int, faces: list[Detection]) -> bool:
        """Does a face appear, or a recently seen one vanish, at this detection frame?"""
        candidates, matched = self._match(index, faces)
        recent = [n for n, t in enumerate(candidates) if t.last[0] >= self._last_detection]
        return len(matched) < len(faces) or any(n not in matched for n in recent)

    def _search_since_last_detection(self) -> None:
        for entry in self._pending:
            if entry[0] > self._last_detection and not entry[3]:
                faces = self.redetect(entry[1])
                entry[3] = True
                if faces is None:
                    entry[2] = True  # detection failed there: hide the whole frame
                else:
                    self._link(entry[0], faces)

    def _link(self, index: int, faces: list[Detection]) -> None:
        candidates, matched = self._match(index, faces)
        for n, m in matched.items():
            candidates[n].seen.append((index, faces[m]))
        used_faces = set(matched.values())
        for m, face in enumerate(faces):
            if m not in used_faces:
                self.tracks.append(_Track(self._next_id, [(index, face)]))
                self._next_id += 1

    def _region(self, track: _Track, index: int) -> Region | None:
        seen = track.seen
        first_index, first = seen[0]
        last_index, last = seen[-1]
        if index < first_index or index > last_index:
            # Held: before the first or after the last detection, moving on as the face moved.
            if min(abs(index - first_index), abs(index - last_index)) > self.hold:
                return None
            if len(seen) == 1:
                (a_index, a), (b_index, b) = seen[0], seen[0]
            else:
                (a_index, a), (b_index, b) = seen[:2] if index < first_index else seen[-2:]
            if a_index == b_index:
                return Region(a, "held", track.ident)
            x1, y1, x2, y2 = _lerp(a, b, (index - a_index) / (b_index - a_index))
            return Region(_between(a, b, x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)), "held", track.ident)
        for (a_index, a), (b_index, b) in zip(seen, seen[1:] + [seen[-1]]):
            if index == a_index:
                return Region(a, "detector", track.ident)
            if a_index < index < b_index:
                box = _lerp(a, b, (index - a_index) / (b_index - a_index))
                return Region(_between(a, b, *box), "tracker", track.ident)
        return None
