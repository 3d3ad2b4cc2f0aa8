"""The one error type for every failure with a stable code, and each cause's class.

`ServiceError(code, message, permanent)`: `code` is stable (it leads an upload's `errorMessage`,
a job's `last_error` and the table of codes in docs/ERRORS.md), the message is for a person, and
`permanent` says whether trying again can help. The worker pool decides retry-or-fail from
`permanent` alone (as Celery's `autoretry_for` / `dont_autoretry_for` do); anything that is not a
ServiceError is taken as transient and retried with backoff. One cause, one class, one code, in
every feature.
"""
from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, code: str, message: str, permanent: bool = True):
        super().__init__(message)
        self.code, self.permanent = code, permanent


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: a ServiceError that says so."""
    return isinstance(exc, ServiceError) and exc.permanent


class _OneCode(ServiceError):
    """A cause with a single code: raised with a message only."""
    code = "service_error"
    permanent = True

    def __init__(self, message: str):
        super().__init__(type(self).code, message, type(self).permanent)


class MediaError(ServiceError, ValueError):
    """A media file cannot be used: unreadable_media, no_video_stream, still_image, no_frames,
    frames_lost, undecodable_media, resolution_too_large, frame_conversion, source_changed,
    too_many_hidden_frames."""


class PathRefused(ServiceError, ValueError):
    """A path a caller named cannot be used: outside_root, own_folder, source_missing,
    not_a_regular_file, unreadable, path_changed, unusable_path, path_too_long, name_too_long."""


class PlatformStateError(ServiceError):
    """The platform's documents do not allow this run: already_has_tasks (the video has tasks and
    force_write is 0), no_tasks (nothing to annotate), task_mismatch (a stored task video and its
    frame documents disagree)."""


class DatasetError(ServiceError, ValueError):
    """A dataset version cannot be built as asked: bad_id, unknown_version, no_group, no_tasks,
    bad_task_list, bad_augmentations, task_failed."""


class ImageError(_OneCode, ValueError):
    """An image folder or archive holds no usable image."""
    code = "unreadable_images"


class StorageError(ServiceError, RuntimeError):
    """A storage operation failed: storage_refused when retrying cannot help (no bucket, no access),
    else storage_unavailable."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__("storage_refused" if permanent else "storage_unavailable", message, permanent)


class DetectorError(_OneCode, RuntimeError):
    """Detection failed on a frame (the caller decides whether to fail closed)."""
    code = "detection_failed"


class DetectorUnavailable(_OneCode, RuntimeError):
    """The detector's service is down or throttling after its own retries: try the job again later,
    never count its frames as detected."""
    code = "detector_unavailable"
    permanent = False


class DetectorMisconfigured(_OneCode, RuntimeError):
    """The detector cannot work as configured (model files, credentials): retrying cannot help."""
    code = "detector_misconfigured"


class GaveUp(_OneCode):
    """A job used all its attempts ([Jobs] max_attempts)."""
    code = "too_many_attempts"


class PartFailed(ServiceError):
    """A part of a long upload failed for good: the upload fails with the part's code and message."""
