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
    width: int            # after rotation
    height: int           # after rotation
    rotation: int         # degrees counter-clockwise to apply for display (0, 90, 180, 270)
    nominal_fps: float
    average_fps: float
    duration: float       # seconds
    frame_count: int      # counted by demuxing when the header has none or lies
    variable_frame_rate: bool
    has_audio: bool
    # Every frame's timestamp in display order, when the stream's timestamps are clean enough to
    # plan which frames need decoding (all present, unique, no edit-list discards); else None.
    frame_pts: np.ndarray | None = field(default=None, repr=False, compare=False)
    # When reading the packets stopped at damage: what stopped it, and how many frames the
    # container declares (its frame count, else its duration times the rate; 0 when unknown).
    damaged: str | None = None
    declared_frames: int = 0

    @property
    def frames_held(self) -> int:
        """The frames the file should give: the container's own count when damage hid the rest."""
        return max(self.frame_count, self.declared_frames) if self.damaged else self.frame_count


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


def probe_video(path: Path | str, max_width: int, max_height: int, name: str | None = None) -> MediaInfo:
    """Everything the pipeline needs to plan, read before any work; rejects unusable media.
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
        # Count packets by demuxing (cheap, no decoding): headers may omit or misstate the count.
        pts_list: list[int] = []
        clean, damaged = True, None
        try:
            for packet in container.demux(stream):
                if packet.size:
                    if packet.pts is not None:
                        pts_list.append(packet.pts)
                    clean = clean and packet.pts is not None and not packet.is_discard
        except av.FFmpegError as exc:
            damaged = exc.strerror or type(exc).__name__  # keep what could be read; say that more was there
        # Decode one frame: proves the stream decodes and gives the rotation.
        if pts_list:
            container.seek(0, stream=stream)
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as exc:
            raise MediaError("undecodable_media", f"{name}: video cannot be decoded ({exc.strerror})") from None
        if first is None or not pts_list:
            raise MediaError("no_frames", f"{name} contains no decodable video frames")
        rotation = _normalise_rotation(getattr(first, "rotation", 0))
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        if width > max_width or height > max_height:
            raise MediaError("resolution_too_large",
                             f"{name} is {width}x{height}; the maximum is {max_width}x{max_height}")
        time_base = stream.time_base or Fraction(1, 90000)
        pts_list.sort()
        frame_pts = np.array(pts_list, dtype=np.int64)
        clean = clean and bool(frame_pts.size) and bool(np.all(np.diff(frame_pts) > 0))
        span = float((pts_list[-1] - pts_list[0]) * time_base) if len(pts_list) > 1 else 0.0
        nominal = float(stream.guessed_rate or stream.average_rate or 0) or 25.0
        average = (len(pts_list) - 1) / span if span > 0 else nominal
        deltas = np.diff(np.array(pts_list, dtype=np.int64)) if len(pts_list) > 2 else np.array([])
        vfr = bool(deltas.size and (deltas.max() - deltas.min()) * float(time_base) > 0.5 / nominal)
        duration = span + 1.0 / (average or nominal)
        # What the container declares: its frame count, else (constant rate only) its duration times
        # the rate. Clearly more than could be read means damage hid the rest, even without an error.
        declared = stream.frames or (round(container.duration / av.time_base * nominal)
                                     if container.duration and not vfr else 0)
        if declared > len(pts_list) + max(1, declared // 100):
            damaged = damaged or f"the container declares {declared} frames, {len(pts_list)} could be read"
        return MediaInfo(container=container.format.name, codec=codec, width=width, height=height,
                         rotation=rotation, nominal_fps=round(nominal, 6), average_fps=round(average, 6),
                         duration=round(duration, 6), frame_count=len(pts_list), variable_frame_rate=vfr,
                         has_audio=bool(container.streams.audio), frame_pts=frame_pts if clean else None,
                         damaged=damaged, declared_frames=int(declared))


class Sampler:
    """Chooses which decoded frames to keep.

    timestamp mode: sample k is the first frame whose time (from the first frame) is at or after
    k / rate; a frame that satisfies several k is kept once. legacy mode: the old service's
    arithmetic, every round(source_fps / rate)-th frame counted from frame 1.
    """

    def __init__(self, rate: int, mode: str, source_fps: float, next_sample: int = 0):
        self.rate = rate
        self.mode = mode
        self.step = max(1, round(source_fps / rate)) if source_fps else 1
        self.next_sample = next_sample

    def keep(self, number: int, time_from_first: Fraction) -> bool:
        if self.mode == "legacy":
            return (number - 1) % self.step == 0
        if time_from_first * self.rate >= self.next_sample:
            self.next_sample = math.floor(time_from_first * self.rate) + 1
            return True
        return False


# Codecs whose decoders honour skip_frame=NONREF by dropping exactly the frames nothing refers to.
_SKIPPABLE_CODECS = {"h264", "hevc"}


def frames_to_skip(info: MediaInfo, sampler: Sampler, time_base: Fraction,
                   resume: ResumePoint | None) -> set[int]:
    """Timestamps of the frames the sampler will not keep, planned from the probe's list: the
    decoder may skip those of them that no other frame refers to. Empty when not safe to plan
    (unclean timestamps, legacy sampling, which counts decoded frames, or another codec)."""
    if info.frame_pts is None or sampler.mode != "timestamp" or info.codec not in _SKIPPABLE_CODECS:
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


@dataclass
class DecodeStats:
    """How a decode pass ended, for comparing with the probe: every frame the probe counted should
    have been seen (decoded, or skipped on purpose because nothing needed it)."""
    frames_seen: int = 0
    frames_decoded: int = 0          # of those, how many the decoder produced (the rest it skipped)
    stopped_by: str | None = None   # the decoding error that ended the stream early


def decode_samples(path: Path | str, sampler: Sampler, info: MediaInfo, resume: ResumePoint | None = None,
                   stats: DecodeStats | None = None,
                   name: str | None = None) -> Iterator[tuple[SampledFrame, ResumePoint]]:
    """Decode the video once and yield the kept frames, each with the resume point after it.

    Frames planned not to be kept are decoded only when other frames refer to them (skip_frame
    NONREF per packet): on sources with B-frames that spares about a third of the decoding. They
    still count in the frame numbers. With `resume`, seek to the last consumed frame and continue
    numbering from there. A decode error part-way (corrupt tail) ends the stream after the frames
    that did decode; `stats` says how many frames were seen and what stopped the decoding.
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
        fallback_step = Fraction(1, 1) / Fraction(info.average_fps or info.nominal_fps).limit_denominator(100000)
        skippable = frames_to_skip(info, sampler, time_base, resume)
        skipped: list[int] = []  # timestamps handed to the decoder as skippable, not yet passed
        number = 0
        first_pts: int | None = None
        last_pts: int | None = None
        skip_until: int | None = None
        if resume is not None:
            number, first_pts, skip_until = resume.last_number, resume.first_pts, resume.last_pts
            try:
                container.seek(resume.last_pts, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                container.seek(0, stream=stream)
        for frame in _decoded(container, stream, skippable, skipped, stats):
            stats.frames_decoded += 1
            pts = frame.pts
            if pts is None:  # some containers carry no timestamps: derive them from the rate
                pts = int((last_pts + fallback_step / time_base) if last_pts is not None else 0)
            # Skippable frames shown before this one were not decoded: count them all the same.
            while skipped and skipped[0] <= pts:
                passed = heapq.heappop(skipped)
                if passed < pts and (skip_until is None or passed > skip_until):
                    number += 1
            if skip_until is not None:
                if pts <= skip_until:
                    continue
                skip_until = None
            if first_pts is None:
                first_pts = pts
            if last_pts is not None and pts <= last_pts:
                continue  # a repeated timestamp would be a duplicate frame
            last_pts = pts
            number += 1
            time_from_first = Fraction(pts - first_pts) * time_base
            if sampler.keep(number, time_from_first):
                yield (SampledFrame(number, float(time_from_first), pts, frame),
                       ResumePoint(pts, number, sampler.next_sample, first_pts))
        # Skipped frames after the last decoded one were seen too (when damage ended the stream, one
        # of them may have been the damaged frame: it was never decoded, so it cannot be told).
        stats.frames_seen = number + sum(1 for p in skipped if skip_until is None or p > skip_until)


def _decoded(container, stream, skippable: set[int], skipped: list[int],
             stats: DecodeStats) -> Iterator[av.VideoFrame]:
    """Frames in display order; packets of `skippable` frames go in with skip_frame NONREF (their
    timestamps are pushed onto the heap `skipped`). Stops at a decoding error (kept in `stats`)."""
    codec = stream.codec_context
    try:
        for packet in container.demux(stream):
            if skippable:
                skip = packet.pts in skippable
                codec.skip_frame = "NONREF" if skip else "DEFAULT"
                if skip:
                    heapq.heappush(skipped, packet.pts)
            yield from packet.decode()
    except av.FFmpegError as exc:
        stats.stopped_by = exc.strerror or type(exc).__name__
        log.warning("decoding stopped: %s", stats.stopped_by)


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
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}

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
        last_pts = None
        streams = [self._vin] + ([self._ain] if self._ain is not None else [])
        for packet in _packets(self._inp, streams):
            if packet.stream is self._ain:
                self._audio_packet(packet)
                continue
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                log.warning("video decoding stopped: %s", exc)
                return
            for frame in decoded:
                pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # the encoder needs rising timestamps
                last_pts = pts
                if frame.format.name != "yuv420p" or (frame.width, frame.height) != (self.width, self.height):
                    frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
                frame.pts, frame.time_base = pts, self.time_base
                yield frame

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
