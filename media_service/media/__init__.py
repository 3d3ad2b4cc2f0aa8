"""Video work with PyAV (FFmpeg with libx264), one concept a module; `video_processor` is its door.

`probe` what a file holds, `sampling` which frames to keep, `decode` one pass that numbers and keeps
them, `frames` conversions between frames and arrays, `encode` task videos, `verify` a task video as
a browser gets it, `rewrite` a whole video re-encoded frame by frame (privacy), `prefetch` decoding
in a thread of its own. This module holds what they share: the error and how a file is opened.
"""
from __future__ import annotations

from pathlib import Path

import av

from media_service.errors import MediaError

__all__ = ["MediaError", "open_input"]


def open_input(path: Path | str, name: str | None = None) -> av.container.InputContainer:
    """The file opened for reading; a file FFmpeg cannot open raises MediaError naming only `name`."""
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # never the path FFmpeg was given
        raise MediaError("unreadable_media", f"cannot open {name or Path(path).name} as a video: {reason}") from None
