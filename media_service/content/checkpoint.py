"""Where a content job (and a part of a long upload) resumes: its checkpoint, typed.

Tasks are cut in order and each commit moves `next_task` on (`ContentPipeline._commit_task`): a
resumed run decodes from `resume` (the sampler's point after the last committed task, or an image
folder's position) with the tracks as that task left them. A content job also keeps the file it
reads (`source`, so a run never mixes two files), whether it has removed the video's earlier tasks
(`replaced`), and when it was cut in parts, how many and what they plan, and the track ids it
renames across their boundaries. The stored field names are the ones runs have always written.
"""
from __future__ import annotations

from dataclasses import dataclass

from media_service.worker_pool import Checkpoint


@dataclass
class CutCheckpoint(Checkpoint):
    """Tasks committed so far: a `content_part` job's whole checkpoint."""
    next_task: int = 0             # the index of the next task to cut (the upload's numbering)
    frames_done: int = 0           # frames in the committed tasks (of this job)
    resume: dict | None = None     # where decoding resumes: vp.ResumePoint's doc, or {"position": n}
    tracks: dict | None = None     # the annotator's tracks after the last committed task (request_type 1)

    @classmethod
    def from_doc(cls, doc: dict) -> "CutCheckpoint":
        return cls(**_cut_fields(doc))

    def to_doc(self) -> dict:
        return {"next_task": self.next_task, "frames_done": self.frames_done,
                **_present(resume=self.resume, tracks=self.tracks)}

    def committed(self, index: int, frames: int, resume: dict) -> None:
        """Task `index`, of `frames` frames, committed; decoding resumes at `resume`."""
        self.next_task, self.frames_done, self.resume = index + 1, self.frames_done + frames, resume


@dataclass
class ContentCheckpoint(CutCheckpoint):
    """A `content` job's checkpoint: the tasks it cut itself, or the parts it waits for."""
    source: dict | None = None     # the size and mtime_ns of the video this run reads
    replaced: bool = False         # the video's earlier tasks removed (force_write): the run's first commit
    parts: int = 0                 # cut in this many parts (0: cut here), planned before they were queued
    planned_tasks: int = 0
    planned_frames: int = 0
    renamed_tracks: list | None = None  # [[a later part's track id, the earlier id it continues], ...]

    @classmethod
    def from_doc(cls, doc: dict) -> "ContentCheckpoint":
        return cls(**_cut_fields(doc), source=doc.get("source"), replaced=bool(doc.get("replaced")),
                   parts=doc.get("parts") or 0, planned_tasks=doc.get("planned_tasks") or 0,
                   planned_frames=doc.get("planned_frames") or 0, renamed_tracks=doc.get("renamed_tracks"))

    def to_doc(self) -> dict:
        planned = {"parts": self.parts, "planned_tasks": self.planned_tasks,
                   "planned_frames": self.planned_frames} if self.parts else {}
        return {**super().to_doc(), **_present(source=self.source, renamed_tracks=self.renamed_tracks),
                **({"replaced": True} if self.replaced else {}), **planned}


def _cut_fields(doc: dict) -> dict:
    return {"next_task": doc.get("next_task", 0), "frames_done": doc.get("frames_done", 0),
            "resume": doc.get("resume"), "tracks": doc.get("tracks")}


def _present(**fields) -> dict:
    """The fields that are set (a checkpoint stores no nulls for what it has not reached yet)."""
    return {name: value for name, value in fields.items() if value is not None}
