"""Video work with PyAV (FFmpeg with libx264), one concept a module; this module is the package's door.

`probe` what a file holds, `sampling` which frames to keep, `decode` one pass that numbers and keeps
them, `frames` conversions between frames and arrays, `encode` task videos, `verify` a task video as
a browser gets it, `rewrite` a whole video re-encoded frame by frame (privacy), `prefetch` decoding
in a thread of its own, `container` how a file is opened.

Decoded frames go to the encoder as they come (no colour conversion when the source is already
yuv420p), so memory holds a few frames, not a task's worth, and the source is decoded once.
The rest of the package reaches this work through the names below (`from media_service import media
as vp`); the root file `video_processor.py` re-exports them for scripts and old callers.
"""
from __future__ import annotations

import logging

from media_service.errors import MediaError
from media_service.media.container import open_input
from media_service.media.decode import (
    REORDER_WINDOW,
    DecodeStats,
    FrameLoss,
    SampledFrame,
    decode_frames_at,
    decode_samples,
    display_times,
    frame_loss,
    rgb_frames,
)
from media_service.media.encode import TaskEncoder, output_size, prepare_frame, task_video_size
from media_service.media.frames import (
    DISPLAY_ROTATION,
    VideoFrame,
    fit_even,
    frame_from_bgr,
    frame_to_rgb,
    yuv420p_array,
    yuv420p_frame,
)
from media_service.media.near_duplicates import NearDuplicates, leave_out_near_duplicates
from media_service.media.parts import Part, media_info_doc, media_info_from_doc, plan_parts, splittable
from media_service.media.prefetch import Prefetcher
from media_service.media.probe import MediaInfo, SourceRate, probe_video, source_frame_rate
from media_service.media.rewrite import MP4_AUDIO, MP4_LIKE, VideoRewriter
from media_service.media.sampling import ResumePoint, Sampler, frames_to_skip, legacy_next
from media_service.media.verify import VideoCheck, check_task_video, top_level_boxes

log = logging.getLogger("video_processor")  # the door's name: log lines read as they did before the split

__all__ = [
    "MediaError", "open_input",
    # probe
    "MediaInfo", "probe_video", "SourceRate", "source_frame_rate",
    # sampling
    "ResumePoint", "legacy_next", "Sampler", "frames_to_skip",
    # parts (one long video cut by many workers)
    "Part", "plan_parts", "splittable", "media_info_doc", "media_info_from_doc",
    # near_duplicates (adaptive sampling)
    "NearDuplicates", "leave_out_near_duplicates",
    # decode
    "SampledFrame", "REORDER_WINDOW", "display_times", "DecodeStats", "FrameLoss", "frame_loss", "decode_samples",
    "decode_frames_at", "rgb_frames",
    # frames
    "VideoFrame", "DISPLAY_ROTATION", "fit_even", "frame_to_rgb", "yuv420p_array", "yuv420p_frame", "frame_from_bgr",
    # encode
    "task_video_size", "output_size", "prepare_frame", "TaskEncoder",
    # verify
    "VideoCheck", "top_level_boxes", "check_task_video",
    # rewrite
    "MP4_AUDIO", "MP4_LIKE", "VideoRewriter",
    # prefetch
    "Prefetcher",
]
