"""Video work with PyAV (FFmpeg with libx264): probe, sample by timestamp, encode task videos, verify.

Decoded frames go to the encoder as they come (no colour conversion when the source is already
yuv420p), so memory holds a few frames, not a task's worth, and the source is decoded once.
"""
from __future__ import annotations

import contextvars
import heapq
import logging
import math
import os
import queue
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)


class MediaError(ValueError):
    """The media cannot be processed; `code` is stable, the message is for a person."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class MediaInfo:
    container: str
    codec: str
    width: int            # displayed: after rotation, and scaled by the pixel aspect ratio
    height: int           # displayed: after rotation
    rotation: int         # degrees counter-clockwise to apply for display (0, 90, 180, 270)
    nominal_fps: float
    average_fps: float
    duration: float       # seconds
    frame_count: int      # packets holding a picture, counted by demuxing (a hint for progress only)
    variable_frame_rate: bool
    has_audio: bool
    # Every frame's timestamp in display order, when this stream's timestamps are trustworthy enough
    # to plan which frames need decoding (see `_plannable`); else None: decode every frame.
    frame_pts: np.ndarray | None = field(default=None, repr=False, compare=False)
    # How long the container says the video stream lasts (seconds; 0 when it does not say): what
    # a decode that ends early is measured against.
    declared_duration: float = 0.0
    # The header's frame count (AVI dwLength, MP4 sample count; 0 when none): a hint that only sizes
    # a loss once damage is certain, since null chunks, packed B-frames and edit lists make it differ.
    declared_frames: int = 0


@dataclass
class SampledFrame:
    number: int           # 1-based source frame number
    time: float           # seconds from the first frame
    pts: int
    frame: av.VideoFrame


@dataclass
class ResumePoint:
    """Where a previous run stopped: the last frame it consumed and the sampler's state."""
    last_pts: int
    last_number: int
    next_sample: int
    first_pts: int

    def to_doc(self) -> dict:
        return {"last_pts": self.last_pts, "last_number": self.last_number,
                "next_sample": self.next_sample, "first_pts": self.first_pts}

    @classmethod
    def from_doc(cls, doc: dict | None) -> "ResumePoint | None":
        return cls(**doc) if doc else None


def _open(path: Path | str, name: str | None = None) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # never the path FFmpeg was given
        raise MediaError("unreadable_media", f"cannot open {name or Path(path).name} as a video: {reason}") from None


# Demuxers of single pictures: a PNG or JPEG named .mp4 opens as a "video" of one frame.
_STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "jpegls_pipe",
                        "qoi_pipe", "gem_pipe", "pgm_pipe", "ppm_pipe", "j2k_pipe", "svg_pipe"}


def _normalise_rotation(degrees: float | int | None) -> int:
    return int(round((degrees or 0) / 90.0)) % 4 * 90


# Containers that store each frame's presentation time (MP4/MOV's composition offsets): their packet
# timestamps can plan a decode. AVI stores none (decode order, packed B-frames), raw streams have
# none, and some MPEG-TS and Matroska muxers write decode times: those decode every frame.
_PLANNABLE_CONTAINERS = ("mov,mp4,m4a,3gp,3g2,mj2",)
# Codecs whose decoders honour skip_frame=NONREF by dropping exactly the frames nothing refers to.
_SKIPPABLE_CODECS = {"h264", "hevc"}


def _plannable(container_name: str, codec: str, pts: list[int | None], discarded: bool) -> bool:
    """Whether the packets' timestamps are the frames' own presentation times, one per frame."""
    return (container_name in _PLANNABLE_CONTAINERS and codec in _SKIPPABLE_CODECS and not discarded
            and bool(pts) and None not in pts and len(set(pts)) == len(pts))


def _display_width(width: int, aspect: Fraction | None) -> int:
    """The coded width stretched by a non-square pixel aspect ratio (DV, anamorphic DVD and HDV)."""
    if not aspect or aspect <= 0 or aspect == 1:
        return width
    return max(2, round(width * aspect))


def _first_frame(path: Path | str, name: str) -> av.VideoFrame | None:
    """Decode one frame (from a fresh open: raw streams cannot seek back): proves the stream decodes
    and gives the rotation."""
    with _open(path, name) as container:
        try:
            return next(container.decode(container.streams.video[0]), None)
        except av.FFmpegError as exc:
            raise MediaError("undecodable_media", f"{name}: video cannot be decoded ({exc.strerror})") from None


def probe_video(path: Path | str, max_width: int, max_height: int, name: str | None = None) -> MediaInfo:
    """Everything the pipeline needs to plan, read before any work; rejects unusable media. The
    content decides how the file is read (FFmpeg probes it), not its extension.
    `name` is what messages call the file (`path` may be a /proc/self/fd path)."""
    name = name or Path(path).name
    with _open(path, name) as container:
        if container.format.name in _STILL_IMAGE_FORMATS or container.format.name.endswith("_pipe"):
            raise MediaError("still_image", f"{name} is a still image ({container.format.name.removesuffix('_pipe')}),"
                                            " not a video: send images with content_type 2")
        if not container.streams.video:
            raise MediaError("no_video_stream", f"{name} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        # Demux once (cheap, no decoding) for the timestamps; headers may omit or misstate counts.
        pts_list: list[int | None] = []
        discarded = False
        try:
            for packet in container.demux(stream):
                if packet.size:
                    pts_list.append(packet.pts)
                    discarded = discarded or packet.is_discard
        except av.FFmpegError as exc:  # damage: keep what could be read; the decode pass measures it
            log.warning("%s: reading the packets stopped early: %s", name, exc.strerror or type(exc).__name__)
        first = _first_frame(path, name) if pts_list else None
        if first is None:
            raise MediaError("no_frames", f"{name} contains no decodable video frames")
        rotation = _normalise_rotation(getattr(first, "rotation", 0))
        aspect = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        width, height = _display_width(first.width, aspect), first.height
        if rotation in (90, 270):
            width, height = height, width
        if width > max_width or height > max_height:
            raise MediaError("resolution_too_large",
                             f"{name} is {width}x{height}; the maximum is {max_width}x{max_height}")
        time_base = stream.time_base or Fraction(1, 90000)
        known = sorted(p for p in pts_list if p is not None)
        plannable = _plannable(container.format.name, codec, pts_list, discarded)
        span = float((known[-1] - known[0]) * time_base) if len(known) > 1 else 0.0
        nominal = float(stream.guessed_rate or stream.average_rate or 0) or 25.0
        average = (len(known) - 1) / span if span > 0 else nominal
        deltas = np.diff(np.array(known, dtype=np.int64)) if len(known) > 2 else np.array([])
        vfr = bool(deltas.size and (deltas.max() - deltas.min()) * float(time_base) > 0.5 / nominal)
        duration = span + 1.0 / (average or nominal) if span else len(pts_list) / nominal
        if stream.duration:
            declared = float(stream.duration * time_base)
        elif container.duration:  # the whole file's: less the time before the video's first packet
            start = container.start_time or 0
            offset = float(known[0] * time_base) - start / av.time_base if known else 0.0
            declared = container.duration / av.time_base - max(0.0, offset)
        else:
            declared = 0.0
        return MediaInfo(container=container.format.name, codec=codec, width=width, height=height,
                         rotation=rotation, nominal_fps=round(nominal, 6), average_fps=round(average, 6),
                         duration=round(duration, 6), frame_count=len(pts_list), variable_frame_rate=vfr,
                         has_audio=bool(container.streams.audio),
                         frame_pts=np.array(sorted(pts_list), dtype=np.int64) if plannable else None,
                         declared_duration=round(max(0.0, declared), 6), declared_frames=int(stream.frames or 0))


def average_frame_rate(path: Path | str) -> float | None:
    """The video stream's average frame rate as FFmpeg reports it (avg_frame_rate; r_frame_rate
    when it gives none), read from the headers and the few packets FFmpeg probes: cheap enough
    for a request, unlike `probe_video`, which reads every packet. The sampler works on the same
    average (measured from the packets), so a variable-rate source is judged by its average.
    None when the file is not a readable video: the worker's probe reports why."""
    try:
        with _open(path) as container:
            if not container.streams.video or container.format.name.endswith("_pipe") \
                    or container.format.name in _STILL_IMAGE_FORMATS:
                return None
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return float(rate) if rate and rate > 0 else None
    except (MediaError, av.FFmpegError):
        return None


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
        if mode == "legacy" and not next_sample:
            self.next_sample = legacy_next(0, self.source_fps, rate)

    def keep(self, number: int, time_from_first: Fraction) -> bool:
        if self.mode == "legacy":
            if number < self.next_sample:
                return False
            self.next_sample = legacy_next(number, self.source_fps, self.rate)
            return True
        if time_from_first * self.rate >= self.next_sample:
            self.next_sample = math.floor(time_from_first * self.rate) + 1
            return True
        return False

    def count(self, frames: int) -> int:
        """How many of `frames` frames this rule keeps (legacy), for progress."""
        kept, picked = 0, legacy_next(0, self.source_fps, self.rate)
        while picked <= frames:
            kept, picked = kept + 1, legacy_next(picked, self.source_fps, self.rate)
        return kept


def frames_to_skip(info: MediaInfo, sampler: Sampler, time_base: Fraction,
                   resume: ResumePoint | None) -> set[int]:
    """Timestamps of the frames the sampler will not keep, planned from the probe's list: the
    decoder may skip those of them that no other frame refers to. Empty when not safe to plan
    (timestamps that are not the frames' own, or legacy sampling, which counts decoded frames)."""
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


def decode_samples(path: Path | str, sampler: Sampler, info: MediaInfo, resume: ResumePoint | None = None,
                   stats: DecodeStats | None = None,
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
    with _open(path, name) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        # Half the cores decode, the encoder's frame threads take the rest: on 2 cores one
        # decoding thread beside x264 measured faster than frame threads fighting x264 for CPU.
        codec.thread_type = "AUTO"
        codec.thread_count = max(1, (os.cpu_count() or 2) // 2)
        time_base = stream.time_base or Fraction(1, 90000)
        rate = Fraction(stream.guessed_rate or stream.average_rate or info.nominal_fps or 25).limit_denominator(100000)
        step = 1 / rate / time_base
        skippable = frames_to_skip(info, sampler, time_base, resume)
        skipped: list[int] = []  # timestamps handed to the decoder as skippable, not yet passed
        number = 0
        first_pts: int | None = None
        skip_until: int | None = None    # a stream that seeked: frames up to this time were consumed
        count_through = 0                # a stream read from the start: frames up to this number were
        if resume is not None and info.frame_pts is not None:
            number, first_pts, skip_until = resume.last_number, resume.first_pts, resume.last_pts
            try:
                container.seek(resume.last_pts, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                number, skip_until, count_through = 0, None, resume.last_number
        elif resume is not None:
            count_through = resume.last_number
        if first_pts is not None:
            stats.saw(float(first_pts * time_base))  # a resumed pass covers the time from the first frame
        window = 0 if info.frame_pts is not None else REORDER_WINDOW  # planned: the stamps are the frames' own
        for frame, pts in display_times(_decoded(container, stream, skippable, skipped, stats), step, window):
            stats.frames_decoded += 1
            # Skippable frames shown before this one were not decoded: count them all the same.
            while skipped and skipped[0] <= pts:
                passed = heapq.heappop(skipped)
                if passed < pts and (skip_until is None or passed > skip_until):
                    number += 1
                    stats.saw(float(passed * time_base))
            if skip_until is not None:
                if pts <= skip_until:
                    continue
                skip_until = None
            if first_pts is None:
                first_pts = pts
            number += 1
            stats.saw(float(pts * time_base))
            if number <= count_through:
                continue
            time_from_first = Fraction(pts - first_pts) * time_base
            if sampler.keep(number, time_from_first):
                yield (SampledFrame(number, float(time_from_first), int(pts), frame),
                       ResumePoint(int(pts), number, sampler.next_sample, int(first_pts)))
        # Skipped frames after the last decoded one were seen too (when damage ended the stream, one
        # of them may have been the damaged frame: it was never decoded, so it cannot be told).
        for passed in skipped:
            if skip_until is None or passed > skip_until:
                number += 1
                stats.saw(float(passed * time_base))
        stats.frames_seen = number


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


def output_size(info: MediaInfo, max_height: int) -> tuple[int, int]:
    """Task video size: the displayed size, optionally downscaled, made even for yuv420p."""
    width, height = info.width, info.height
    if max_height and height > max_height:
        width, height = max(2, round(width * max_height / height / 2) * 2), max_height - max_height % 2
        return width, height
    return width + width % 2, height + height % 2


DISPLAY_ROTATION = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def prepare_frame(frame: av.VideoFrame, rotation: int, size: tuple[int, int]) -> av.VideoFrame:
    """The frame as the task video needs it: rotated for display, at `size`, yuv420p."""
    width, height = size
    if rotation == 0 and (frame.width, frame.height) == size:
        if frame.format.name == "yuv420p":
            return frame  # the common case: no copy at all
        return frame.reformat(format="yuv420p")
    if rotation == 0 and frame.width % 2 == 0 and frame.height % 2 == 0:
        return frame.reformat(width=width, height=height, format="yuv420p")  # downscale only
    image = frame.to_ndarray(format="bgr24")
    if rotation:
        image = cv2.rotate(image, DISPLAY_ROTATION[rotation])
    image = fit_even(image, size)
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


def fit_even(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to `size`, or pad an odd edge by one replicated pixel (no content lost)."""
    width, height = size
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if width - w in (0, 1) and height - h in (0, 1):
        return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class TaskEncoder:
    """One H.264 task video: yuv420p, constant frame rate, faststart MP4, one frame per sample."""

    def __init__(self, path: Path, size: tuple[int, int], rate: int, preset: str, crf: int):
        self.path = path
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = Fraction(1, rate)
        # Keyframe every second: annotators seek frame by frame.
        self.stream.codec_context.gop_size = rate
        self.stream.codec_context.options = {"preset": preset, "crf": str(crf)}
        # PyAV defaults encoders to slice threads; x264's frame threads are ~30% faster here.
        self.stream.codec_context.thread_type = "FRAME"

    def add(self, frame: av.VideoFrame) -> None:
        frame.pts = self.count
        frame.time_base = self.stream.codec_context.time_base
        frame.pict_type = av.video.frame.PictureType.NONE  # never inherit the source's keyframes
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def close(self) -> int:
        self.container.mux(self.stream.encode(None))
        self.container.close()
        return self.count

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already failing; the partial file is removed below
            pass
        self.path.unlink(missing_ok=True)


@dataclass
class VideoCheck:
    frame_count: int      # packets in the stream: x264 writes one per frame it was given
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    faststart: bool
    codec: str
    ends_decode: bool     # the first frame and the last one decode

    def problems(self, frames: int, size: tuple[int, int], rate: int) -> list[str]:
        """How this file differs from the task video planned: `frames` frames of `size` at `rate`."""
        expected = {"frames": frames, "codec": "h264", "pixel format": "yuv420p", "size": size, "rate": rate,
                    "moov before mdat": True, "first and last frame decode": True}
        found = {"frames": self.frame_count, "codec": self.codec, "pixel format": self.pix_fmt,
                 "size": (self.width, self.height), "rate": self.fps, "moov before mdat": self.faststart,
                 "first and last frame decode": self.ends_decode}
        return [f"{name} {found[name]} (planned {want})" for name, want in expected.items() if found[name] != want]


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (to see that `moov` precedes `mdat`)."""
    boxes = []
    with open(path, "rb") as handle:
        while True:
            header = handle.read(8)
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
                handle.seek(size - 16, 1)
            elif size == 0:
                boxes.append(kind.decode("latin-1"))
                break
            else:
                handle.seek(size - 8, 1)
            boxes.append(kind.decode("latin-1"))
    return boxes


def check_task_video(path: Path) -> VideoCheck:
    """What a browser would get, read from the container: the packets (not decoded), codec, pixel
    format, size, rate and box order; then the first frame and the last group of pictures decoded,
    which proves the stream decodes from end to end without decoding all of it."""
    boxes = top_level_boxes(path)
    faststart = "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        last_keyframe, count = None, 0
        for packet in container.demux(stream):
            if packet.size:
                count += 1
                if packet.is_keyframe:
                    last_keyframe = packet.pts
        ends_decode = False
        if count and last_keyframe is not None:
            container.seek(0, stream=stream)
            first = next(container.decode(stream), None)
            container.seek(last_keyframe, stream=stream, backward=True, any_frame=False)
            tail = sum(1 for _ in container.decode(stream))
            ends_decode = first is not None and tail > 0
        return VideoCheck(count, ctx.pix_fmt or stream.format.name, ctx.width, ctx.height,
                          Fraction(stream.average_rate or 0), faststart, ctx.name, ends_decode)


# Audio codecs the MP4 muxer takes as they are; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}
MP4_LIKE = {".mp4", ".mov", ".m4v"}
# Output container by file extension (the file itself may be a /proc/self/fd path without one).
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
               ".divx": "avi"}

# Containers that store only decode order (AVI): frames reordered by B-frames would play at wrong times.
_NO_PRESENTATION_TIMES = {".avi", ".divx"}

VideoFrame = av.VideoFrame  # for type hints outside this module


class VideoRewriter:
    """Re-encode a video's pictures one by one and keep the rest: the coded size (an odd edge grows
    by one pixel: yuv420p needs even sizes), every timestamp, the display rotation, the audio
    (copied, or re-encoded to AAC where an MP4 cannot hold it) and faststart.

        with VideoRewriter(source, target, rotation, preset, crf, ".mp4") as rewriter:
            for frame in rewriter.frames():   # yuv420p at (width, height), rising timestamps
                rewriter.write(frame)          # the same frame, or a changed copy of it
            rewriter.finish()

    Frames may be written later than they are read (a tracker holds a few back); audio packets are
    written as they are read. A damaged tail ends the video after what could be decoded.
    """

    def __init__(self, source: Path | str, target: Path | str, rotation: int, preset: str, crf: int, suffix: str,
                 name: str | None = None):
        """`suffix` (".mp4", ".mkv", ...) chooses the output container; `name` is what messages
        call the source."""
        suffix = suffix.lower()
        options = {"movflags": "+faststart"} if suffix in MP4_LIKE else {}
        self._inp = _open(source, name)
        try:
            self._out = av.open(str(target), "w", format=_CONTAINERS.get(suffix, "mp4"), options=options)
        except BaseException:
            self._inp.close()
            raise
        vin = self._inp.streams.video[0]
        vin.codec_context.thread_type = "AUTO"
        self.coded_width, self.coded_height = vin.codec_context.width, vin.codec_context.height
        self.width, self.height = self.coded_width + self.coded_width % 2, self.coded_height + self.coded_height % 2
        self.time_base = vin.time_base or Fraction(1, 90000)
        vout = self._out.add_stream("libx264", rate=vin.average_rate or vin.guessed_rate or Fraction(25))
        vout.width, vout.height, vout.pix_fmt = self.width, self.height, "yuv420p"
        vout.codec_context.time_base = self.time_base
        vout.codec_context.thread_type = "FRAME"
        vout.codec_context.options = {"preset": preset, "crf": str(crf)}
        if suffix in _NO_PRESENTATION_TIMES:  # frames must be stored in display order there: no B-frames
            vout.codec_context.options = {**vout.codec_context.options, "bframes": "0"}
        if rotation:
            vout.set_display_rotation(rotation)
        self._vin, self._vout = vin, vout
        self._ain, self._aout, self._resample = self._audio(suffix)

    def _audio(self, suffix: str):
        if not self._inp.streams.audio:
            return None, None, None
        ain = self._inp.streams.audio[0]
        codec = ain.codec_context.name
        if suffix not in MP4_LIKE or codec in MP4_AUDIO:
            return ain, self._out.add_stream_from_template(ain), None
        log.info("audio %s cannot go into %s as it is: re-encoding to AAC", codec, suffix)
        aout = self._out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
        return ain, aout, av.AudioResampler(format="fltp", layout="stereo", rate=aout.codec_context.sample_rate)

    def frames(self) -> Iterator[av.VideoFrame]:
        """Every decoded frame at its display time (`display_times`), rising."""
        last_pts = None
        rate = self._vin.guessed_rate or self._vin.average_rate or Fraction(25)
        for frame, stamp in display_times(self._decoded(), 1 / Fraction(rate) / self.time_base):
            pts = round(stamp)
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1  # the encoder needs rising timestamps
            last_pts = pts
            if frame.format.name != "yuv420p" or (frame.width, frame.height) != (self.width, self.height):
                frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
            frame.pts, frame.time_base = pts, self.time_base
            yield frame

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The video's frames as decoded; audio packets are written on the way."""
        streams = [self._vin] + ([self._ain] if self._ain is not None else [])
        for packet in _packets(self._inp, streams):
            if packet.stream is self._ain:
                self._audio_packet(packet)
                continue
            try:
                yield from packet.decode()
            except av.FFmpegError as exc:
                log.warning("video decoding stopped: %s", exc)
                return

    def write(self, frame: av.VideoFrame) -> None:
        self._out.mux(self._vout.encode(frame))

    def finish(self) -> None:
        self._out.mux(self._vout.encode(None))
        if self._aout is not None and self._resample is not None:
            self._audio_packet(None)

    def _audio_packet(self, packet) -> None:
        if self._resample is None:
            if packet.dts is not None:  # the demuxer's flush packet carries nothing
                packet.stream = self._aout
                self._out.mux(packet)
            return
        for frame in packet.decode() if packet is not None else [None]:
            for converted in self._resample.resample(frame):
                self._out.mux(self._aout.encode(converted))
        if packet is None:
            self._out.mux(self._aout.encode(None))

    def close(self) -> None:
        self._out.close()
        self._inp.close()

    def __enter__(self) -> "VideoRewriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _packets(container, streams) -> Iterator[av.Packet]:
    """Demuxed packets; a damaged tail ends the stream after what could be read."""
    try:
        yield from container.demux(*streams)
    except av.FFmpegError as exc:
        log.warning("reading stopped early: %s", exc)


def rgb_frames(path: Path | str, name: str | None = None) -> Iterator[np.ndarray]:
    """Every frame of a video, in order, as an RGB array at its coded size (a task video has no
    rotation). A decoding error raises MediaError: a stored task video must decode whole."""
    with _open(path, name) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise MediaError("undecodable_media", f"{name or Path(path).name}: {exc.strerror}") from None


def frame_to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """An RGB copy of the frame at (width, height), for a detector."""
    try:
        return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    except av.FFmpegError as exc:
        raise MediaError("frame_conversion", f"cannot convert a frame for detection: {exc}") from None


def yuv420p_array(frame: av.VideoFrame) -> np.ndarray:
    """A yuv420p frame's planes as one (height * 3 / 2, width) array (a copy to change)."""
    return frame.to_ndarray()


def yuv420p_frame(array: np.ndarray, like: av.VideoFrame) -> av.VideoFrame:
    """The array from `yuv420p_array` as a frame again, with `like`'s timestamp."""
    frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
    frame.pts, frame.time_base = like.pts, like.time_base
    return frame


def frame_from_bgr(image: np.ndarray) -> av.VideoFrame:
    """A BGR image (OpenCV's order) as a yuv420p frame for a task video."""
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


class Prefetcher:
    """Runs an iterator in a thread with a small bounded queue, so decoding overlaps encoding."""

    _END = object()

    def __init__(self, iterator: Iterator, depth: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # Run in a copy of the caller's context so log lines keep the job's label.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run, iterator),
                                        name="decode", daemon=True)
        self._thread.start()

    def _run(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()

    def _put(self, item) -> bool:
        """Wait for room in the queue unless the consumer stopped; False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
