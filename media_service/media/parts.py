"""One long video cut by many workers: which frames each part samples, planned from the packets'
timestamps before anything is decoded.

The probe lists every frame's display timestamp when they can be trusted (`MediaInfo.frame_pts`); the
timestamp sampler run over that list picks exactly the frames a full decode picks, with the same
1-based numbers. The picked frames are cut into tasks and the tasks into parts of `tasks_per_part`.
Each part carries where its decode starts, as a resumed run starts (`ResumePoint`: the frame before
its first, the sampler's state there), the timestamps of its own span (to plan which frames its
decoder may skip) and its last frame, after which it stops.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import numpy as np

from media_service.media.probe import MediaInfo
from media_service.media.sampling import ResumePoint, Sampler


@dataclass(frozen=True)
class Part:
    index: int
    first_task: int
    tasks: int
    frames: int                  # sampled frames in the part
    first_number: int            # the source frame numbers of its first and last sampled frames
    last_number: int
    start: ResumePoint | None    # where its decode starts (None: at the file's beginning)
    span_pts: tuple[int, ...]    # timestamps from the frame before its first through its last

    def media_info(self, whole: MediaInfo) -> MediaInfo:
        """The file's probe as this part's decode needs it: its own span of timestamps."""
        return replace(whole, frame_pts=np.array(self.span_pts, dtype=np.int64))

    def to_doc(self) -> dict:
        doc = asdict(self)
        doc["start"] = self.start.to_doc() if self.start else None
        doc["span_pts"] = list(self.span_pts)
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> "Part":
        return cls(**{**doc, "start": ResumePoint.from_doc(doc["start"]), "span_pts": tuple(doc["span_pts"])})


def splittable(info: MediaInfo) -> str | None:
    """None when parts can be planned from this file's timestamps; else why not."""
    if info.frame_pts is None or info.time_base is None:
        return (f"its timestamps cannot plan a decode ({info.container}, {info.codec}): frames are numbered "
                "only by decoding them in order")
    if not info.intact:
        return "some of its packets are damaged: its frames are counted by one decode"
    return None


def plan_parts(info: MediaInfo, rate: int, frames_per_task: int, tasks_per_part: int) -> list[Part]:
    """The parts of a `splittable` file sampled at `rate` (timestamp sampling): one per run of
    `tasks_per_part` tasks of `frames_per_task` frames; a single part when it has no more."""
    pts = info.frame_pts.tolist()
    sampler = Sampler(rate, "timestamp", info.average_fps)
    picked: list[tuple[int, int]] = []  # (frame number, the sampler's next_sample before it)
    for number, stamp in enumerate(pts, 1):
        before = sampler.next_sample
        if sampler.keep(number, Fraction(stamp - pts[0]) * info.time_base):
            picked.append((number, before))
    per_part = frames_per_task * tasks_per_part
    parts = []
    for first in range(0, len(picked), per_part):
        chunk = picked[first:first + per_part]
        number, next_sample = chunk[0]
        start = None if number == 1 else ResumePoint(last_pts=pts[number - 2], last_number=number - 1,
                                                     next_sample=next_sample, first_pts=pts[0], sampled=first)
        parts.append(Part(len(parts), first // frames_per_task, math.ceil(len(chunk) / frames_per_task), len(chunk),
                          number, chunk[-1][0], start, tuple(pts[max(0, number - 2):chunk[-1][0]])))
    return parts


def media_info_doc(info: MediaInfo) -> dict:
    """The probe without its timestamps (a part carries its own span), as a stored document."""
    doc = asdict(replace(info, frame_pts=None))
    doc.pop("frame_pts")
    doc["time_base"] = [info.time_base.numerator, info.time_base.denominator] if info.time_base else None
    return doc


def media_info_from_doc(doc: dict) -> MediaInfo:
    time_base = Fraction(*doc["time_base"]) if doc.get("time_base") else None
    return MediaInfo(**{**doc, "time_base": time_base})
