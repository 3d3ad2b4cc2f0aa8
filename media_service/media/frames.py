"""Frames to and from arrays: RGB for a detector, yuv420p planes to draw on, BGR images, rotation."""
from __future__ import annotations

import av
import cv2
import numpy as np

from media_service.errors import MediaError

VideoFrame = av.VideoFrame  # for type hints outside this package

DISPLAY_ROTATION = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def fit_even(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to `size`, or pad an odd edge by one replicated pixel (no content lost)."""
    width, height = size
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if width - w in (0, 1) and height - h in (0, 1):
        return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


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
