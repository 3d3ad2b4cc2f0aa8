"""Synthetic test media whose every frame carries its own 1-based number in pixels.

`render_frame(n)` is deterministic, so a task frame can be checked against the source frame it
claims to come from (the code read back, and PSNR against the rendering).
"""
from __future__ import annotations

import json
import math
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

BITS = 12


def _cell(width: int) -> int:
    return max(6, min(16, width // BITS))


def render_frame(number: int, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (x * 255 // max(1, width - 1) + number * 7) % 256
    image[..., 1] = (y * 255 // max(1, height - 1)) % 256
    image[..., 2] = (number * 37) % 200 + 30
    cell = _cell(width)
    for bit in range(BITS):
        on = (number >> bit) & 1
        image[0:cell, bit * cell:(bit + 1) * cell] = 255 if on else 0
    return image


def read_number(image: np.ndarray) -> int:
    cell = _cell(image.shape[1])
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    value = 0
    for bit in range(BITS):
        if gray[cell // 2, bit * cell + cell // 2] > 128:
            value |= 1 << bit
    return value


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def make_video(path: Path, frames: int, fps: Fraction | int = 25, size: tuple[int, int] = (320, 240),
               times: list[float] | None = None, rotation: int = 0, audio: bool = False,
               render=None, keyframe_every: int | None = None) -> Path:
    """An H.264 clip; `times` (seconds) makes it variable-frame-rate; `rotation` sets display rotation.
    `render(number, width, height)` draws each (coded) frame; the default draws its number.
    `keyframe_every`: the GOP size (x264's default is 250 frames)."""
    render = render or render_frame
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    fps = Fraction(fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        if width % 2 or height % 2:
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv444p"  # 4:2:0 needs even sizes; 4:4:4 keeps an odd size real
        else:
            stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"crf": "16", "preset": "veryfast",
                                        **({"g": str(keyframe_every)} if keyframe_every else {})}
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = out.add_stream("aac", rate=44100) if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(render(i + 1, width, height), format="bgr24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            else:
                frame.pts, frame.time_base = i, 1 / fps
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if audio_stream is not None:
            duration = (times[-1] if times else frames / fps) + 0.1
            samples = int(44100 * float(duration))
            t = np.arange(samples) / 44100
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start:start + 1024]
                af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, start
                out.mux(audio_stream.encode(af))
            out.mux(audio_stream.encode(None))
    return path


def ffprobe_frames(path: Path) -> tuple[list[int], Fraction]:
    """Presentation timestamps of every decodable frame, read by the ffprobe CLI (not PyAV)."""
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=time_base:frame=pts,best_effort_timestamp", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    data = json.loads(result.stdout)
    time_base = Fraction(data["streams"][0]["time_base"])
    pts = [f.get("pts", f.get("best_effort_timestamp")) for f in data["frames"]]
    return pts, time_base


def expected_samples(path: Path, rate: int) -> list[int]:
    """The contract's rule on ffprobe's timestamps: sample k is the first frame at or after k/rate."""
    pts, time_base = ffprobe_frames(path)
    kept, k = [], 0
    for number, p in enumerate(pts, 1):
        t = Fraction(p - pts[0]) * time_base
        if t * rate >= k:
            kept.append(number)
            k = math.floor(t * rate) + 1
    return kept


def ffprobe_stream(path: Path, select: str = "v:0") -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", select, "-count_frames", "-show_entries",
                             "stream=codec_name,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,"
                             "duration",
                             "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["streams"][0]


def moov_before_mdat(path: Path) -> bool:
    data = path.read_bytes()
    order, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        order.append(data[offset + 4:offset + 8])
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            break
        offset += size
    return b"moov" in order and b"mdat" in order and order.index(b"moov") < order.index(b"mdat")


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def ffmpeg_frame(path: Path, number: int) -> np.ndarray:
    """Source frame `number` (1-based) as ffmpeg displays it (rotation applied)."""
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{number - 1})",
                             "-vsync", "0", "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"],
                            capture_output=True, check=True)
    return cv2.imdecode(np.frombuffer(result.stdout, np.uint8), cv2.IMREAD_COLOR)
