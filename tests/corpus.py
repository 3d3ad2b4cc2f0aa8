"""Real encodings made with the ffmpeg command line (issue 18): what cameras, phones, screen
recorders and editing tools produce, a few seconds each at a small size.

Every frame of the source carries its own number in pixels (`tests.media.render_frame`), so a
task frame can be traced to the source frame FFmpeg decodes at that position. Each case is one
`ffmpeg` command reading those frames raw from stdin; the reference for what a file holds is
always what the ffmpeg CLI decodes from it, never a header's frame count.
"""
from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from tests.media import read_number, render_frame

SIZE = (176, 144)  # H.263 needs one of its picture sizes; everything else takes it too
FPS = "24000/1001"
FRAMES = 60


@dataclass(frozen=True)
class Case:
    name: str
    suffix: str
    args: tuple[str, ...]               # ffmpeg output options
    input_args: tuple[str, ...] = ()    # ffmpeg input options for the raw frames
    size: tuple[int, int] = SIZE
    frames: int = FRAMES
    rate: str = FPS
    rotation: int = 0                        # degrees the display matrix turns the picture
    filters: str | None = None               # applied to the raw frames before encoding
    post: tuple[tuple[str, ...], ...] = field(default=())  # more ffmpeg commands: {src} -> {dst}

    @property
    def file_name(self) -> str:
        return f"{self.name}{self.suffix}"


def _case(name, suffix, *args, **kw) -> Case:
    return Case(name, suffix, tuple(args), **kw)


_X264_BFRAMES = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-bf", "3",
                 "-x264-params", "open-gop=1:keyint=24:min-keyint=24", "-pix_fmt", "yuv420p")
_VFR = "setpts='N/(24000/1001*TB)+if(gte(N,20),(N-20)*0.03/TB,0)'"  # frames drift apart after frame 20

CASES: tuple[Case, ...] = (
    _case("mpeg4_bframes", ".avi", "-c:v", "mpeg4", "-bf", "2", "-q:v", "2"),
    _case("mpeg4_dx50", ".avi", "-c:v", "mpeg4", "-bf", "2", "-q:v", "2", "-vtag", "DX50"),
    _case("mpeg4_xvid", ".divx", "-c:v", "mpeg4", "-bf", "2", "-q:v", "2", "-vtag", "XVID", "-f", "avi"),
    # What Xvid and DivX write: B-frames packed into the P-frame's chunk, then a placeholder chunk.
    _case("xvid_packed_bframes", ".avi", "-c:v", "libxvid", "-bf", "2", "-q:v", "2"),
    _case("msmpeg4v2", ".avi", "-c:v", "msmpeg4v2", "-q:v", "2"),
    _case("msmpeg4v3", ".avi", "-c:v", "msmpeg4", "-q:v", "2"),
    _case("mjpeg", ".avi", "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p"),
    _case("mjpeg", ".mov", "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj422p"),
    # A variable-rate source into AVI: the muxer fills the gaps with null chunks ("repeat the last").
    _case("cinepak_null_frames", ".avi", "-fps_mode", "passthrough", "-c:v", "cinepak", "-r", FPS,
          filters=_VFR),
    _case("h264_bframes_open_gop", ".mp4", *_X264_BFRAMES),
    _case("h264_bframes_open_gop", ".mkv", *_X264_BFRAMES),
    _case("h264_bframes_open_gop", ".ts", *_X264_BFRAMES),
    _case("h264_bframes_open_gop", ".m2ts", *_X264_BFRAMES, "-mpegts_m2ts_mode", "1", "-f", "mpegts"),
    _case("h264_raw", ".h264", *_X264_BFRAMES),
    _case("hevc", ".mp4", "-c:v", "libx265", "-preset", "ultrafast", "-crf", "20", "-tag:v", "hvc1",
          "-x265-params", "log-level=error:bframes=3"),
    _case("hevc", ".mkv", "-c:v", "libx265", "-preset", "ultrafast", "-crf", "20",
          "-x265-params", "log-level=error:bframes=3"),
    _case("vp8", ".webm", "-c:v", "libvpx", "-b:v", "1M", "-crf", "8", "-auto-alt-ref", "1", "-lag-in-frames", "16"),
    _case("vp9", ".webm", "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "20", "-deadline", "realtime",
          "-cpu-used", "8"),
    _case("av1", ".mkv", "-c:v", "libaom-av1", "-crf", "30", "-cpu-used", "8", "-usage", "realtime"),
    _case("mpeg2", ".mpg", "-c:v", "mpeg2video", "-bf", "2", "-q:v", "2", "-f", "mpeg"),
    _case("mpeg2", ".vob", "-c:v", "mpeg2video", "-bf", "2", "-q:v", "2", "-f", "vob"),
    _case("wmv2", ".asf", "-c:v", "wmv2", "-q:v", "2", "-f", "asf"),
    _case("wmv2", ".wmv", "-c:v", "wmv2", "-q:v", "2", "-f", "asf"),
    _case("flv1", ".flv", "-c:v", "flv", "-q:v", "2"),
    _case("h263", ".3gp", "-c:v", "h263", "-q:v", "2", rate="25"),
    _case("theora", ".ogv", "-c:v", "libtheora", "-q:v", "9"),
    _case("prores", ".mov", "-c:v", "prores_ks", "-profile:v", "2", "-pix_fmt", "yuv422p10le"),
    _case("dnxhr", ".mov", "-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p", size=(256, 144)),
    _case("dnxhr", ".mxf", "-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p", "-f", "mxf",
          size=(256, 144)),
    _case("dv", ".dv", "-c:v", "dvvideo", "-pix_fmt", "yuv411p", "-f", "dv", size=(720, 480), rate="30000/1001"),
    _case("h264_interlaced", ".mts", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-flags",
          "+ildct+ilme", "-x264-params", "tff=1", "-pix_fmt", "yuv420p", "-f", "mpegts", size=(176, 144)),
    _case("h264_10bit_422", ".mkv", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt",
          "yuv422p10le", "-profile:v", "high422"),
    _case("h264_rotated", ".mp4", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
          rotation=90,  # a phone held upright: the display matrix turns it
          post=(("-i", "{src}", "-c", "copy", "-metadata:s:v:0", "rotate=90", "{dst}"),)),
    _case("h264_anamorphic", ".mp4", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt",
          "yuv420p", "-aspect", "16:9"),
    _case("h264_vfr_phone", ".mp4", "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "veryfast",
          "-crf", "18", "-bf", "0", "-pix_fmt", "yuv420p", "-video_track_timescale", "90000", filters=_VFR),
    # Cut with stream copy from a frame that is not a keyframe: the edit list starts before the
    # first packet shown, and the frames before it decode only as references (discarded).
    _case("h264_edit_list", ".mp4", *_X264_BFRAMES, post=(("-ss", "0.9", "-i", "{src}", "-c", "copy", "{dst}"),)),
)


def make_case(case: Case, directory: Path) -> Path:
    """Write the case's file into `directory` (kept when already there)."""
    path = directory / case.file_name
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    width, height = case.size
    raw = b"".join(render_frame(n, width, height).tobytes() for n in range(1, case.frames + 1))
    target = path if not case.post else directory / f"pre-{case.file_name}"
    command = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
               "-r", case.rate, *case.input_args, "-i", "-"]
    if case.filters:
        command += ["-vf", case.filters]
    subprocess.run([*command, "-an", *case.args, str(target)], input=raw, check=True, capture_output=True)
    for step in case.post:
        args = [a.replace("{src}", str(target)).replace("{dst}", str(path)) for a in step]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)
        target.unlink()
    return path


def display_size(path: Path, case: Case) -> tuple[int, int]:
    """The size a player shows, by ffprobe: the coded size stretched by the pixel aspect ratio (DV,
    anamorphic, H.263's 12:11), turned by the case's rotation."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height,sample_aspect_ratio", "-of", "json", str(path)],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    num, den = map(int, stream.get("sample_aspect_ratio", "1:1").split(":"))
    aspect = Fraction(num, den) if num and den else 1  # 0:1 means "not said": square
    width, height = round(stream["width"] * aspect), stream["height"]
    return (height, width) if case.rotation in (90, 270) else (width, height)


@dataclass
class Decoded:
    """What the ffmpeg CLI decodes from a file: each frame's number in pixels, and its time."""
    numbers: list[int]
    times: list[Fraction]

    def sampled(self, rate: int) -> list[int]:
        """The 1-based positions the contract's rule picks: sample k is the first frame at or after k/rate."""
        kept, k = [], 0
        for position, t in enumerate(self.times, 1):
            t = t - self.times[0]
            if t * rate >= k:
                kept.append(position)
                k = math.floor(t * rate) + 1
        return kept


def ffmpeg_decode(path: Path, size: tuple[int, int]) -> Decoded:
    """Every frame the ffmpeg CLI decodes, in order, with ffprobe's best-effort timestamp (the one
    the CLI itself times frames by). The two counts must agree, or the reference is unsure."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=time_base,r_frame_rate:frame=best_effort_timestamp", "-of", "json", str(path)],
                           capture_output=True, text=True, check=True)
    data = json.loads(probe.stdout)
    stream = data["streams"][0]
    time_base, step = Fraction(stream["time_base"]), 1 / Fraction(stream["r_frame_rate"])
    times: list[Fraction] = []
    for frame in data["frames"]:  # a frame without a timestamp follows the one before (as the CLI does)
        known = frame.get("best_effort_timestamp")
        times.append(Fraction(known) * time_base if known is not None else times[-1] + step if times else 0)
    width, height = size
    # At the coded size, not rotated: the number's cells are read from the top left corner.
    pixels = subprocess.run(["ffmpeg", "-v", "error", "-noautorotate", "-i", str(path), "-map", "0:v:0",
                             "-fps_mode", "passthrough", "-vf", f"scale={width}:{height}", "-f", "rawvideo",
                             "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(pixels, np.uint8).reshape(-1, height, width, 3)
    assert len(frames) == len(times), f"ffmpeg decoded {len(frames)} frames, ffprobe {len(times)}"
    return Decoded([read_number(f) for f in frames], times)
