"""One decode pass: every frame numbered and timed as the ffmpeg CLI does, the kept ones yielded."""
from __future__ import annotations

import heapq
import logging
import os
import sys
from collections import deque
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from media_service.errors import MediaError
from media_service.media.container import open_input
from media_service.media.probe import MediaInfo, probe_video
from media_service.media.sampling import FrameNumbers, ResumePoint, Sampler, frames_to_skip

log = logging.getLogger("video_processor")  # the door's name: log lines read as they did before the split


@dataclass
class SampledFrame:
    number: int           # 1-based source frame number
    time: float           # seconds from the first frame
    pts: int
    frame: av.VideoFrame


# Frames a decoder gives are in display order, but where the container stores no presentation
# times (AVI, packed B-frames) their stamps can come in decode order: this many frames are held
# back so the stamps can be sorted back into display order.
REORDER_WINDOW = 6


def display_times(frames: Iterator[av.VideoFrame], step: Fraction,
                  window: int = REORDER_WINDOW) -> Iterator[tuple[av.VideoFrame, int | Fraction]]:
    """Each frame with its display time in the stream's time base: the smallest stamp (pts, else
    the packet's dts) among the frames held, so stamps attached in decode order are put back in
    display order; a frame with no stamp follows the newest by one frame interval (`step`).
    With `window` 0 the frames' own stamps are used as they come."""
    held: deque = deque()
    stamps: list = []  # a heap
    newest = None
    for frame in frames:
        stamp = frame.pts if frame.pts is not None else frame.dts
        if stamp is None:
            stamp = newest + step if newest is not None else 0
        newest = stamp if newest is None else max(newest, stamp)
        held.append(frame)
        heapq.heappush(stamps, stamp)
        if len(held) > window:
            yield held.popleft(), heapq.heappop(stamps)
    while held:
        yield held.popleft(), heapq.heappop(stamps)


@dataclass
class DecodeStats:
    """How a decode pass ended, to measure it against what the file holds: every frame seen
    (decoded, or skipped on purpose because nothing needed it), the packets the decoder refused,
    the error that ended reading, and the span of time the frames covered."""
    frames_seen: int = 0
    frames_decoded: int = 0          # of those, how many the decoder produced (the rest it skipped)
    refused: int = 0                 # packets the decoder rejected as corrupt (it goes on, as ffmpeg does)
    refused_times: list = field(default_factory=list)  # their times in seconds, where they had one
    corrupt: int = 0                 # packets the demuxer flagged as damaged (a truncated last one)
    stopped_by: str | None = None    # the error that ended reading early (damage, truncation)
    first_time: float | None = None  # seconds, the first and last frame seen
    last_time: float | None = None

    def saw(self, seconds: float) -> None:
        self.first_time = seconds if self.first_time is None else min(self.first_time, seconds)
        self.last_time = seconds if self.last_time is None else max(self.last_time, seconds)


@dataclass(frozen=True)
class FrameLoss:
    expected: int
    seen: int
    how: str              # how `expected` was worked out, for the message

    @property
    def lost(self) -> int:
        return self.expected - self.seen


def frame_loss(info: MediaInfo, stats: DecodeStats) -> FrameLoss | None:
    """Frames the file holds that the decode did not give, or None. What a full decode yields is
    the measure: AVI null chunks, packed B-frames, edit lists and wrong header counts lose nothing.
    Damage is what FFmpeg reports (a reading error, packets the demuxer flags as corrupt or the
    decoder refuses) or frames that end well short of the stream's declared duration (Matroska
    stops silently at garbage). Once damage is certain, the frames missing at the end are sized by
    the declared duration, or by the header's frame count at the nominal rate if that says more."""
    interval = 1.0 / (info.nominal_fps or 25.0)
    covered = (stats.last_time - stats.first_time + interval) if stats.first_time is not None else 0.0
    tolerance = max(1, round(info.declared_duration / interval) // 100)  # rounding in headers, not damage
    by_duration = max(0, round((info.declared_duration - covered) / interval)) if info.declared_duration else 0
    if not (stats.stopped_by or stats.refused or stats.corrupt or by_duration > tolerance):
        return None
    by_count = max(0, round((info.declared_frames * interval - covered) / interval))
    tail = max(by_duration, by_count) if max(by_duration, by_count) > tolerance else 0
    reasons = []
    if stats.stopped_by:
        reasons.append(f"reading stopped: {stats.stopped_by}")
    if stats.corrupt:
        reasons.append(f"the demuxer flagged {stats.corrupt} packets as corrupt")
    if stats.refused:
        reasons.append(f"the decoder refused {stats.refused} packets")
    if tail:
        declared = (f"the {info.declared_duration:.2f} s the container declares" if by_duration >= by_count else
                    f"the {info.declared_frames} frames its header declares")
        reasons.append(f"the frames end at {covered:.2f} s of {declared}: {tail} frames at {info.nominal_fps:g} fps")
    # A refused packet past the last frame seen is one of the tail's frames: count it once.
    late = sum(1 for t in stats.refused_times if stats.last_time is not None and t > stats.last_time)
    refused = stats.refused - late if tail else stats.refused
    loss = FrameLoss(stats.frames_seen + refused + tail, stats.frames_seen, "; ".join(reasons))
    return loss if loss.lost > 0 else None


def decode_samples(path: Path | str, sampler: Sampler | FrameNumbers, info: MediaInfo,
                   resume: ResumePoint | None = None, stats: DecodeStats | None = None,
                   name: str | None = None) -> Iterator[tuple[SampledFrame, ResumePoint]]:
    """Decode the video once and yield the kept frames, each with the resume point after it.

    Frames are numbered and timed as a full decode by the ffmpeg CLI numbers and times them: every
    frame the decoder gives counts, at its display time (`display_times`). Where the
    container's timestamps can be trusted (`MediaInfo.frame_pts`), frames planned not to be kept
    are decoded only when other frames refer to them (skip_frame NONREF per packet): on sources
    with B-frames that spares about a third of the decoding; they still count in the numbers. With
    `resume`, such a stream seeks to the last consumed frame; any other decodes from the start and
    counts its way there. Packets the decoder refuses are counted and passed over, as the ffmpeg
    CLI does; a reading error ends the stream; `stats` says what was seen.
    """
    stats = stats if stats is not None else DecodeStats()
    with open_input(path, name) as container:
        stream = container.streams.video[0]
        _share_cores(stream.codec_context)
        time_base = stream.time_base or Fraction(1, 90000)
        rate = Fraction(stream.guessed_rate or stream.average_rate or info.nominal_fps or 25).limit_denominator(100000)
        step = 1 / rate / time_base
        skippable = frames_to_skip(info, sampler, time_base, resume)
        counter = _start_counting(container, stream, info, resume, _FrameCounter(stats, time_base))
        window = 0 if info.frame_pts is not None else REORDER_WINDOW  # planned: the stamps are the frames' own
        for frame, pts in display_times(_decoded(container, stream, skippable, counter.skipped, stats), step, window):
            stats.frames_decoded += 1
            counter.pass_skipped_before(pts)
            number = counter.count(pts)
            if number is None:
                continue
            time_from_first = Fraction(pts - counter.first_pts) * time_base
            if sampler.keep(number, time_from_first):
                yield (SampledFrame(number, float(time_from_first), int(pts), frame),
                       ResumePoint(int(pts), number, sampler.next_sample, int(counter.first_pts), sampler.sampled))
        counter.pass_skipped_after_the_last()
        stats.frames_seen = counter.number


def _share_cores(codec) -> None:
    # Half the cores decode, the encoder's frame threads take the rest: on 2 cores one
    # decoding thread beside x264 measured faster than frame threads fighting x264 for CPU.
    codec.thread_type = "AUTO"
    codec.thread_count = max(1, (os.cpu_count() or 2) // 2)


@dataclass
class _FrameCounter:
    """Numbers the frames as a full decode would: those decoded and those passed over alike."""
    stats: DecodeStats
    time_base: Fraction
    number: int = 0
    first_pts: int | None = None
    skip_until: int | None = None  # a stream that seeked: frames up to this time were consumed
    count_through: int = 0  # a stream read from the start: frames up to this number were consumed
    skipped: list[int] = field(default_factory=list)  # timestamps handed to the decoder as skippable, not yet passed

    def _saw(self, pts: int) -> None:
        self.number += 1
        self.stats.saw(float(pts * self.time_base))

    def pass_skipped_before(self, pts: int) -> None:
        """Skippable frames shown before this one were not decoded: count them all the same."""
        while self.skipped and self.skipped[0] <= pts:
            passed = heapq.heappop(self.skipped)
            if passed < pts and (self.skip_until is None or passed > self.skip_until):
                self._saw(passed)

    def count(self, pts: int) -> int | None:
        """This decoded frame's number, or None when an earlier run already consumed it."""
        if self.skip_until is not None:
            if pts <= self.skip_until:
                return None
            self.skip_until = None
        if self.first_pts is None:
            self.first_pts = pts
        self._saw(pts)
        return None if self.number <= self.count_through else self.number

    def pass_skipped_after_the_last(self) -> None:
        """Skipped frames after the last decoded one were seen too (when damage ended the stream, one
        of them may have been the damaged frame: it was never decoded, so it cannot be told)."""
        for passed in self.skipped:
            if self.skip_until is None or passed > self.skip_until:
                self._saw(passed)


def _start_counting(container, stream, info: MediaInfo, resume: ResumePoint | None,
                    counter: _FrameCounter) -> _FrameCounter:
    """Where a resumed pass starts: a stream with trusted timestamps seeks to the last consumed frame
    (or, when the seek fails, counts from the start as any other stream does)."""
    if resume is not None and info.frame_pts is not None:
        counter.number, counter.first_pts, counter.skip_until = resume.last_number, resume.first_pts, resume.last_pts
        try:
            container.seek(resume.last_pts, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            counter.number, counter.skip_until, counter.count_through = 0, None, resume.last_number
    elif resume is not None:
        counter.count_through = resume.last_number
    if counter.first_pts is not None:
        counter.stats.saw(float(counter.first_pts * counter.time_base))  # a resumed pass covers from the first frame
    return counter


def _decoded(container, stream, skippable: set[int], skipped: list[int],
             stats: DecodeStats) -> Iterator[av.VideoFrame]:
    """Frames in output order; packets of `skippable` frames go in with skip_frame NONREF (their
    timestamps are pushed onto the heap `skipped`). A packet the decoder refuses is counted in
    `stats` and passed over; a reading error ends the frames (kept in `stats`)."""
    codec = stream.codec_context
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            stats.stopped_by = exc.strerror or type(exc).__name__
            log.warning("reading stopped: %s", stats.stopped_by)
            yield from _flushed(codec, stats)
            return
        stats.corrupt += packet.is_corrupt
        if skippable:
            skip = packet.pts in skippable
            codec.skip_frame = "NONREF" if skip else "DEFAULT"
            if skip:
                heapq.heappush(skipped, packet.pts)
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            stats.refused += 1
            if packet.pts is not None:
                stats.refused_times.append(float(packet.pts * packet.time_base))
            log.warning("the decoder refused a packet at %s: %s", packet.pts, exc.strerror or type(exc).__name__)
            continue
        yield from frames


def _flushed(codec, stats: DecodeStats) -> Iterator[av.VideoFrame]:
    """The frames a decoder still holds when reading ended early."""
    try:
        yield from codec.decode(None)
    except av.FFmpegError as exc:
        stats.refused += 1
        log.warning("the decoder failed while flushing: %s", exc.strerror or type(exc).__name__)


def decode_frames_at(path: Path | str, numbers: Iterable[int], info: MediaInfo | None = None,
                     name: str | None = None) -> Iterator[SampledFrame]:
    """The frames at `numbers` (1-based, numbered as a full decode by the ffmpeg CLI numbers them),
    each once, in FFmpeg's output order (rising numbers). Where the probe could plan the decode
    (`MediaInfo.frame_pts`) it starts near the first of them, as a resumed pass does; it stops after
    the last. Fewer come when the video ends before the last number: the caller counts them.
    `info` is the file's probe when the caller has it; else the file is probed here, with no size limit."""
    wanted = FrameNumbers(numbers)
    if not wanted.numbers:
        return
    info = info if info is not None else probe_video(path, sys.maxsize, sys.maxsize, name)
    start, last, pts = min(wanted.numbers), max(wanted.numbers), info.frame_pts
    resume = (ResumePoint(last_pts=int(pts[start - 2]), last_number=start - 1, next_sample=0, first_pts=int(pts[0]))
              if pts is not None and 1 < start <= len(pts) else None)
    with closing(decode_samples(path, wanted, info, resume=resume, name=name)) as samples:
        for sample, _ in samples:
            yield sample
            if sample.number == last:
                return


def rgb_frames(path: Path | str, name: str | None = None) -> Iterator[np.ndarray]:
    """Every frame of a video, in order, as an RGB array at its coded size (a task video has no
    rotation). A decoding error raises MediaError: a stored task video must decode whole."""
    with open_input(path, name) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise MediaError("undecodable_media", f"{name or Path(path).name}: {exc.strerror}") from None
