"""The contract with the Node platform (../shared/docs/CONTRACT.md) in one place: collection names,
enums as stored, object keys, job ids, and the typed parameters a queued job carries from the web
layer to a worker. The documents the platform reads are built beside it, in `platform_docs.py`.

Enums are plain ints in small namespaces (what MongoDB stores and Node compares against), not
`enum.IntEnum`, so nothing depends on how a driver encodes an int subclass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from bson import ObjectId

# -- collections -------------------------------------------------------------------------------
UPLOADS = "AnnotationContentUpload"
PROJECTS = "AnnotationProject"
TASKS = "AnnotationTask"
FRAMES = "AnnotationFrame"
DATASET_VERSIONS = "AnnotationDatasetVersion"
MASTER_DATA = "MasterData"
JOBS = "ProcessingJob"  # ours: one document per unit of background work
TRY_IT = "TryItUpload"  # ours: what the jobs page's try-it form made, kept for its retention


# -- enums (numbers as stored) -----------------------------------------------------------------
class UploadStatus:
    PROCESSING, SUCCEEDED, FAILED, NODEJS_ERROR, DOWNLOADING = 0, 1, 2, 3, 4


class RequestType:
    TASKS_ONLY = 0              # AA_bar
    TASKS_AND_ANNOTATIONS = 1   # AA_tasks
    ANNOTATIONS_ONLY = 2        # AA
    NAMES = {0: "tasks only", 1: "tasks plus auto-annotation", 2: "auto-annotation only"}  # for people


class ContentType:
    VIDEO, IMAGES = 1, 2


FRAMES_PER_TASK_STANDARD = 120


class DatasetType:
    TRAINING, VALIDATION, TESTING = 1, 2, 3


# error_code values recorded on an upload doc that are not the HTTP status of the answer
ALREADY_HAS_TASKS_CODE = 200  # the Node UI shows status 2 with 200 as succeeded: the tasks exist
CANCELLED_CODE = 499

# -- job records -------------------------------------------------------------------------------
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("done", "failed", "cancelled")

CONTENT_KIND = "content"
CONTENT_PART_KIND = "content_part"  # a run of tasks of a long upload, cut by any worker (content/parts.py)
PRIVACY_KIND = "privacy"
ANNOTATION_KIND = "annotation"  # request_type 2 on the existing tasks (same job id as the upload's content job)
DATASET_KIND = "dataset"


def content_job_id(upload_id: ObjectId) -> str:
    return f"{CONTENT_KIND}:{upload_id}"


def content_part_job_id(upload_id: ObjectId, run: int, part: int) -> str:
    """A part of the `run`-th run of an upload's content job (a new run has parts of its own)."""
    return f"{CONTENT_KIND}:{upload_id}:run{run}:part{part:04d}"


def privacy_job_id(name: str) -> str:
    return f"{PRIVACY_KIND}:{name}"


def dataset_job_id(version_id: ObjectId) -> str:
    return f"{DATASET_KIND}:{version_id}"


# -- names and object keys ---------------------------------------------------------------------
def video_name(source: Path) -> str:
    """`videoName`: a file's name without its last extension (dots inside kept); a folder's name."""
    return source.name if source.is_dir() else source.stem


def video_hold(project_id: ObjectId, name: str) -> str:
    """What a content job holds while queued or running: one run per video of a project."""
    return f"video:{project_id}:{name}"


def task_name(index: int, name: str) -> str:
    return f"task-{index}-{name}"


def task_index(name: str) -> int:
    """n of `task-<n>-<video>` (-1 for a name of another shape)."""
    number = name.split("-", 2)[1] if name.startswith("task-") and name.count("-") >= 2 else ""
    return int(number) if number.isdigit() else -1


def task_key(project_id: ObjectId, name: str) -> str:
    return f"contents/{project_id}/{name}/{name}.mp4"


# Ours, on a task document cut from a video (Node ignores it): which file the task was cut from (the
# caller's path, inside the content folder) and its size and modification time then, so that whoever
# reads that file again for the task (the dataset builder) finds it from the task alone and can tell
# whether it is still the same file.
SOURCE_FINGERPRINT = "sourceFingerprint"


def source_fingerprint(size: int, mtime_ns: int, path: str) -> dict:
    """The `sourceFingerprint` value: {"size": bytes, "mtime_ns": modification time in nanoseconds,
    "path": the upload's `content_path` as the caller sent it}."""
    return {"size": int(size), "mtime_ns": int(mtime_ns), "path": str(path)}


@dataclass(frozen=True)
class PrivacyOutputs:
    """CONTRACT §6: `<name>-processed<ext>`, written as `<name>-processed-temp<ext>` until complete,
    with the JSON log of hidden regions beside it."""
    final: Path
    temp: Path
    log_final: Path
    log_temp: Path

    @classmethod
    def for_source(cls, source: Path, output_dir: Path) -> "PrivacyOutputs":
        stem, ext = source.stem, source.suffix
        return cls(output_dir / f"{stem}-processed{ext}", output_dir / f"{stem}-processed-temp{ext}",
                   output_dir / f"{stem}-processed.regions.json", output_dir / f"{stem}-processed-temp.regions.json")


# -- auto-annotation boxes (CONTRACT §2) --------------------------------------------------------
AUTO_MARK = "autoAnnotation"  # on every box auto-annotation wrote: its version, model, and what it wrote
# (platform_docs.auto_box builds such a box)


def is_untouched_auto_box(box: dict) -> bool:
    """Written by auto-annotation and not changed since: the only boxes a later version replaces."""
    mark, bounds = box.get(AUTO_MARK), box.get("boundaries") or {}
    if not isinstance(mark, dict):
        return False
    return mark.get("wrote") == [bounds.get("label"), bounds.get("x"), bounds.get("y"), bounds.get("w"),
                                 bounds.get("h")]


class FrameAnnotator(Protocol):
    """Boxes for frames, in the contract's shape (what the content job asks of auto-annotation for
    request_type 1, without knowing how they are found). Boxes link across frames and tasks, so a
    task's boxes are final only when it ends, and what links them is saved with each task."""
    batch_size: int

    def input_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size to hand over frames at, for boxes in `size` (the task video's) pixels."""

    def add(self, frames: list, size: tuple[int, int]) -> None:
        """The current task's next RGB frames (numpy), in order."""

    def end_task(self) -> list[list[dict]]:
        """The task has ended: per frame added since the previous call, its boxes in `size` pixels."""

    def state(self) -> dict:
        """What a resumed run needs to go on from here (between tasks), in plain types."""

    def resume(self, state: dict | None) -> None:
        """Go on from a `state()` saved by an earlier attempt (None: from the start)."""

    def summary(self) -> dict:
        """Fields for the upload doc once the run ends (model, labels left out, billable calls)."""

    def report(self) -> dict:
        """The run's counts for its job's result: model, frames, boxes, labels_left_out."""


# -- what a queued job carries ------------------------------------------------------------------
class _StoredParams:
    """A job's parameters as stored in `ProcessingJob.params`, field for field."""

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict):
        return cls(**doc)


@dataclass(frozen=True)
class ContentJobParams(_StoredParams):
    """An accepted processContent request, as the worker needs it (stored in `ProcessingJob.params`)."""
    upload_id: ObjectId
    project_id: ObjectId
    frame_rate: int
    force_write: int
    request_type: int
    content_type: int
    auto_anno_version: int
    frames_per_task: int
    content_path: str       # as the caller sent it
    source: str             # resolved inside the content root when accepted
    video_name: str
    sampling_mode: str = ""  # the request's, else [Content] sampling_mode when accepted ("": a job from before)


@dataclass(frozen=True)
class ContentPartParams(_StoredParams):
    """One part of a long upload (stored in its `ProcessingJob.params`): the upload's request, the part
    (`media.parts.Part`), the probe it was planned from, and what the whole upload plans."""
    content: dict           # the upload's ContentJobParams document
    part: dict              # media.parts.Part.to_doc()
    media_info: dict        # media.parts.media_info_doc(): the probe, less its timestamps
    size: list              # the task videos' width and height
    source: dict            # the source's size and mtime_ns when the parts were planned
    planned_tasks: int
    planned_frames: int
    planned_at: datetime    # when the upload's parts were queued: its ETA counts from there


@dataclass(frozen=True)
class PrivacyJobParams(_StoredParams):
    filename: str           # relative to the input folder, as the caller sent it
    source: str
    output_dir: str

    @property
    def outputs(self) -> PrivacyOutputs:
        return PrivacyOutputs.for_source(Path(self.source), Path(self.output_dir))

    @staticmethod
    def output_dir_for(output_root: Path, filename: str) -> Path:
        """Outputs go to the same subfolder of the output root as the source's in the input root."""
        return output_root / PurePosixPath(filename).parent
