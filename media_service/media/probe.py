"""What a file holds, read before any work: size, rotation, frame rates, every frame's timestamp."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media_service.errors import MediaError
from media_service.media.container import open_input

log = logging.getLogger("video_processor")  # the door's name: log lines read as they did before the split


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
    time_base: Fraction | None = None  # the video stream's: what `frame_pts` counts in
    intact: bool = False  # every packet read, none flagged corrupt (a damaged file is cut by one job)


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
    with open_input(path, name) as container:
        try:
            return next(container.decode(container.streams.video[0]), None)
        except av.FFmpegError as exc:
            raise MediaError("undecodable_media", f"{name}: video cannot be decoded ({exc.strerror})") from None


def probe_video(path: Path | str, max_width: int, max_height: int, name: str | None = None) -> MediaInfo:
    """Everything the pipeline needs to plan, read before any work; rejects unusable media. The
    content decides how the file is read (FFmpeg probes it), not its extension.
    `name` is what messages call the file (`path` may be a /proc/self/fd path)."""
    name = name or Path(path).name
    with open_input(path, name) as container:
        if container.format.name in _STILL_IMAGE_FORMATS or container.format.name.endswith("_pipe"):
            raise MediaError("still_image", f"{name} is a still image ({container.format.name.removesuffix('_pipe')}),"
                                            " not a video: send images with content_type 2")
        if not container.streams.video:
            raise MediaError("no_video_stream", f"{name} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        # Demux once (cheap, no decoding) for the timestamps; headers may omit or misstate counts.
        pts_list: list[int | None] = []
        discarded, intact = False, True
        try:
            for packet in container.demux(stream):
                if packet.size:
                    pts_list.append(packet.pts)
                    discarded = discarded or packet.is_discard
                    intact = intact and not packet.is_corrupt
        except av.FFmpegError as exc:  # damage: keep what could be read; the decode pass measures it
            intact = False
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
                         declared_duration=round(max(0.0, declared), 6), declared_frames=int(stream.frames or 0),
                         time_base=time_base, intact=intact)


# How much of a file a request reads to measure its rate (the worker's probe reads every packet).
RATE_SAMPLE_PACKETS = 1000
RATE_SAMPLE_BYTES = 32 << 20


@dataclass(frozen=True)
class SourceRate:
    """The rate a request's frame_rate is judged by, and where it came from."""
    fps: float
    header_fps: float   # the average rate FFmpeg reports from the headers (avg_frame_rate)
    measured: bool      # fps was measured from the frames' timestamps: the header's rate disagreed with them


def source_frame_rate(path: Path | str) -> SourceRate | None:
    """The video stream's average frame rate, cheap enough for a request (unlike `probe_video`):
    FFmpeg's avg_frame_rate (r_frame_rate when it gives none), unless the first packets hold far
    fewer frames than that rate puts in their span (an AVI of a variable-rate camera: the header
    says 15 fps, null chunks fill the gaps, 2.3 frames a second hold a picture). Then the rate
    measured from their timestamps, as the worker's probe and sampler measure it. None when the file
    is not a readable video: the worker's probe reports why."""
    try:
        with open_input(path) as container:
            if not container.streams.video or container.format.name.endswith("_pipe") \
                    or container.format.name in _STILL_IMAGE_FORMATS:
                return None
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate or rate <= 0:
                return None
            header = float(rate)
            measured = _rate_of_first_packets(container, stream, header)
    except (MediaError, av.FFmpegError):
        return None
    return SourceRate(measured, header, True) if measured is not None else SourceRate(header, header, False)


def _rate_of_first_packets(container, stream, header_fps: float) -> float | None:
    """Frames less one over the span of their timestamps, for the first packets holding a picture (at
    most RATE_SAMPLE_PACKETS or RATE_SAMPLE_BYTES); None when the header's rate puts less than 10 %
    more frames in that span than are there (they agree)."""
    stamps, read = [], 0
    try:
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.size and stamp is not None:
                stamps.append(stamp)
                read += packet.size
            if len(stamps) >= RATE_SAMPLE_PACKETS or read >= RATE_SAMPLE_BYTES:
                break
    except av.FFmpegError:  # damage: judge by what could be read (the worker's run reports the rest)
        pass
    span = float((max(stamps) - min(stamps)) * stream.time_base) if len(stamps) > 1 and stream.time_base else 0.0
    if span <= 0 or len(stamps) >= 0.9 * (span * header_fps + 1):
        return None
    return (len(stamps) - 1) / span
