"""Which decoded frames to keep: by timestamp, by the old service's frame numbers, or given numbers;
where a previous pass stopped."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction

from media_service.media.probe import MediaInfo


@dataclass
class ResumePoint:
    """Where a previous run stopped: the last frame it consumed and the sampler's state (and, in
    adaptive sampling, the near-duplicate judge's: `near_duplicates.NearDuplicates.to_doc`)."""
    last_pts: int
    last_number: int
    next_sample: int
    first_pts: int
    sampled: int = 0  # frames the rate picked up to here
    near_duplicates: dict | None = None

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict | None) -> "ResumePoint | None":
        return cls(**doc) if doc else None


def legacy_next(picked: int, fps: float, rate: int) -> int:
    """The old service's next frame number after frame `picked` (0 before the first): 1-based
    numbers as OpenCV's CAP_PROP_POS_FRAMES after each read, `fps` its CAP_PROP_FPS. When
    round(fps) is a multiple of the rate, every round(fps / rate)-th frame (30 at 5: 6, 12, 18...).
    Otherwise steps of int(fps / rate), each followed by one extra frame for every number it passed
    over (after `picked`, up to the step's end) that is a multiple of round(fps) / (round(fps) % rate),
    which keeps about `rate` a second (24 at 5: 4, 9, 14, 19, 23, 28...)."""
    whole = round(fps)
    if rate >= fps:
        return picked + 1  # asked for as many frames as the source has, or more: every frame
    if whole % rate == 0:
        return picked + max(1, round(fps / rate))
    step_end = picked + max(1, int(fps / rate))
    remainder = whole % rate  # v is a multiple of whole / remainder when v * remainder is one of whole
    return step_end + sum(1 for v in range(picked + 1, step_end + 1) if v * remainder % whole == 0)


class Sampler:
    """Chooses which decoded frames to keep.

    timestamp mode: sample k is the first frame whose time (from the first frame) is at or after
    k / rate; a frame that satisfies several k is kept once. legacy mode: the frame numbers the old
    service picked (`legacy_next`); `next_sample` is then the next frame number to keep.
    """

    def __init__(self, rate: int, mode: str, source_fps: float, next_sample: int = 0):
        self.rate = rate
        self.mode = mode
        self.source_fps = source_fps or 25.0
        self.next_sample = next_sample
        self.sampled = 0  # frames kept so far (a resumed run sets it from its ResumePoint)
        if mode == "legacy" and not next_sample:
            self.next_sample = legacy_next(0, self.source_fps, rate)

    def resume_from(self, point: ResumePoint) -> None:
        self.next_sample, self.sampled = point.next_sample, point.sampled

    def keep(self, number: int, time_from_first: Fraction) -> bool:
        if self.mode == "legacy":
            if number < self.next_sample:
                return False
            self.next_sample = legacy_next(number, self.source_fps, self.rate)
        elif time_from_first * self.rate >= self.next_sample:
            self.next_sample = math.floor(time_from_first * self.rate) + 1
        else:
            return False
        self.sampled += 1
        return True

    def count(self, frames: int) -> int:
        """How many of `frames` frames this rule keeps (legacy), for progress."""
        kept, picked = 0, legacy_next(0, self.source_fps, self.rate)
        while picked <= frames:
            kept, picked = kept + 1, legacy_next(picked, self.source_fps, self.rate)
        return kept


class FrameNumbers:
    """Keeps the frames at the given 1-based numbers (`decode_frames_at`). Its mode, "numbers", plans
    no skipping (`frames_to_skip`): every frame is decoded and numbered as a full decode numbers it."""
    mode, rate, next_sample, sampled = "numbers", 0, 0, 0

    def __init__(self, numbers):
        self.numbers = frozenset(numbers)

    def keep(self, number: int, time_from_first: Fraction) -> bool:
        return number in self.numbers


def frames_to_skip(info: MediaInfo, sampler: Sampler | FrameNumbers, time_base: Fraction,
                   resume: ResumePoint | None) -> set[int]:
    """Timestamps of the frames the sampler will not keep, planned from the probe's list: the
    decoder may skip those of them that no other frame refers to. Empty when not safe to plan
    (timestamps that are not the frames' own, or legacy sampling, which counts decoded frames)
    and for given frame numbers (`FrameNumbers`: every frame is decoded)."""
    if info.frame_pts is None or sampler.mode != "timestamp":
        return set()
    plan = Sampler(sampler.rate, sampler.mode, 0, sampler.next_sample)
    first = resume.first_pts if resume else int(info.frame_pts[0])
    after = resume.last_pts if resume else None
    skip = set()
    for pts in info.frame_pts.tolist():
        if after is not None and pts <= after:
            continue
        if not plan.keep(0, Fraction(pts - first) * time_base):
            skip.add(pts)
    return skip
