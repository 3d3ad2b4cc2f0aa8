"""The door to the video work with PyAV for scripts and old callers (`import video_processor as vp`):
every name of `media_service.media` (probe, sample, decode, encode, verify, rewrite).

The work lives in `media_service/media/`; the package's own modules import it from there, never
from this file.
"""
from __future__ import annotations

from media_service.media import *  # noqa: F403 - the door's names are the package's
from media_service.media import __all__, log  # noqa: F401
