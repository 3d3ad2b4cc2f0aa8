"""How a media file is opened: the one place FFmpeg's error on opening becomes a MediaError."""
from __future__ import annotations

from pathlib import Path

import av

from media_service.errors import MediaError


def open_input(path: Path | str, name: str | None = None) -> av.container.InputContainer:
    """The file opened for reading; a file FFmpeg cannot open raises MediaError naming only `name`."""
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # never the path FFmpeg was given
        raise MediaError("unreadable_media", f"cannot open {name or Path(path).name} as a video: {reason}") from None
