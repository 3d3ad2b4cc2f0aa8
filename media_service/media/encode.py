"""Task videos: their size, each frame made ready for them, and the H.264 encoder that writes them."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2

from media_service.media.frames import DISPLAY_ROTATION, fit_even
from media_service.media.probe import MediaInfo


def task_video_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Task video size for a picture displayed at `width` x `height` (after rotation and pixel aspect):
    downscaled to `max_height` when taller (0: never), made even for yuv420p."""
    if max_height and height > max_height:
        width, height = max(2, round(width * max_height / height / 2) * 2), max_height - max_height % 2
        return width, height
    return width + width % 2, height + height % 2


def output_size(info: MediaInfo, max_height: int) -> tuple[int, int]:
    """Task video size: the displayed size, optionally downscaled, made even for yuv420p."""
    return task_video_size(info.width, info.height, max_height)


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
