"""The `ProcessingJob` collection: every read and write of a job's state, and the `Job` a worker runs.

A job document is the single source of truth for queueing, leases and resume (README "Jobs"):
`state` queued → running → done | failed | cancelled; a running job has a `lease_owner` and a
`lease_expires` a heartbeat renews; `checkpoint` is where a resumed run starts. Every transition is
one conditional update on the owner and state, so two workers can never both act on one job.
`worker_pool.py` (the pool) decides what happens; this module only says it to the database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from media_service.contract import ACTIVE_STATES, DATASET_KIND, FINAL_STATES, dataset_job_id
from media_service.mongo import utcnow


class LeaseLost(RuntimeError):
    """Another worker owns the job now (our lease expired); stop without writing more."""


class VideoBusy(RuntimeError):
    """Another job holds this video (same project and video name) until it ends."""

    def __init__(self, holder: str):
        super().__init__(f"held by {holder}")
        self.holder = holder


@dataclass
class Job:
    """A job document as the code reads it: a claimed job as its worker sees it (`checkpoint` is
    updated in place as the run commits), or any job the pages, the routes and the features read.
    A read that projects fields leaves the rest at their defaults."""
    id: str
    kind: str = ""
    key: str = ""
    params: dict = field(default_factory=dict)
    attempts: int = 0
    max_attempts: int = 0
    stage: str | None = None
    progress: float = 0.0
    checkpoint: dict = field(default_factory=dict)
    cancel_requested: bool = False
    last_error: str | None = None
    run: int = 1  # how many times this id was queued anew (a long upload's parts belong to one run)
    state: str = "queued"
    result: dict | None = None
    eta_seconds: float | None = None
    waiting: bool = False                # a long upload's job queued again to wait for its parts
    parent: str | None = None            # a part: the job it is a part of, and that job's run
    parent_run: int | None = None
    rank: int = 0
    superseded_by: str | None = None     # a record of an earlier run: the job that took its id over
    holds: str | None = None
    lease_owner: str | None = None
    history: list = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict) -> "Job":
        return cls(
            doc["_id"], doc.get("kind") or "", doc.get("key") or "", doc.get("params") or {},
            int(doc.get("attempts") or 0), int(doc.get("max_attempts") or 0), doc.get("stage"),
            float(doc.get("progress") or 0.0), doc.get("checkpoint") or {}, bool(doc.get("cancel_requested")),
            doc.get("last_error"), int(doc.get("run") or 1), doc.get("state") or "queued",
            doc.get("result") if isinstance(doc.get("result"), dict) else None, doc.get("eta_seconds"),
            bool(doc.get("waiting")), doc.get("parent"), doc.get("parent_run"), int(doc.get("rank") or 0),
            doc.get("superseded_by"), doc.get("holds"), doc.get("lease_owner"), list(doc.get("history") or []),
            doc.get("created_at"), doc.get("updated_at"), doc.get("started_at"), doc.get("finished_at"))

    @classmethod
    def maybe(cls, doc: dict | None) -> "Job | None":
        return cls.from_doc(doc) if doc is not None else None


class JobStore:
    def __init__(self, collection: Collection):
        self.collection = collection

    def ensure_indexes(self) -> None:
        # The claim's order (rank, then age) within each branch of its query, so a claim reads a few
        # index keys however long the queue. The branch for cancel requests has its own: without it
        # every claim read every queued job (bench/bench_scale.py: 50 claimers fell to 25 claims/s;
        # with it, 350).
        self.collection.create_index([("state", ASCENDING), ("rank", ASCENDING), ("created_at", ASCENDING)])
        self.collection.create_index([("state", ASCENDING), ("cancel_requested", ASCENDING),
                                      ("rank", ASCENDING), ("created_at", ASCENDING)])
        self.collection.create_index([("kind", ASCENDING), ("key", ASCENDING)])
        self.collection.create_index("superseded_by", sparse=True)  # a job's records of its earlier runs
        self.collection.create_index("parent", sparse=True)  # the parts of a long upload
        # One job at a time per video: a job holds its video while queued or running.
        self.collection.create_index("holds", unique=True, name="one_job_per_video",
                                     partialFilterExpression={"holding": True})

    def get(self, job_id: str) -> Job | None:
        return Job.maybe(self.collection.find_one({"_id": job_id}))

    def enqueue(self, job_id: str, kind: str, key: str, params: dict, max_attempts: int,
                holds: str | None = None, parent: tuple[str, int] | None = None, rank: int = 0) -> tuple[bool, Job]:
        """Queue a job unless one with this id is queued or running.

        Returns (created, job). A finished job with the same id is replaced by the new run, after
        it is kept as a record of its own (`record_ended_run`); an active one is returned untouched,
        so a repeated request starts nothing. With `holds` (e.g. a video's name in its project), the
        job holds it until it ends: queuing a second job for the same thing raises VideoBusy (a
        unique index decides, so it is atomic).
        `parent`: the job this one is a part of, and its run (the parent is woken when this one
        ends, and a cancel of it reaches this one too). `rank`: claims take lower ranks first, then the oldest; a long
        upload's part n has rank n, so one long upload never holds back the uploads queued after it.
        """
        now = utcnow()
        fresh = {
            "kind": kind, "key": key, "state": "queued", "stage": "queued", "params": params,
            "attempts": 0, "max_attempts": max_attempts, "lease_owner": None, "lease_expires": None,
            "not_before": now, "created_at": now, "updated_at": now, "started_at": None,
            "finished_at": None, "last_error": None, "checkpoint": {}, "progress": 0.0,
            "cancel_requested": False, "holds": holds, "holding": holds is not None, "history": [],
            "rank": rank, **({"parent": parent[0], "parent_run": parent[1]} if parent else {}),
        }
        try:
            try:
                self.collection.insert_one({"_id": job_id, **fresh, "run": 1})
                return True, self.get(job_id)
            except DuplicateKeyError as exc:
                if "one_job_per_video" in str(exc):
                    raise
            ended = self.record_ended_run(job_id)
            replaced = ended and self.collection.find_one_and_update(
                {"_id": job_id, "state": {"$in": list(FINAL_STATES)}, "run": ended.get("run")},
                {"$set": fresh, "$inc": {"run": 1}}, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            holder = self.collection.find_one({"holds": holds, "holding": True}, {"_id": 1})
            raise VideoBusy(holder["_id"] if holder else "another job") from None
        if replaced:
            return True, Job.from_doc(replaced)
        return False, self.get(job_id)

    def record_ended_run(self, job_id: str) -> dict | None:
        """Keep the ended run of `job_id` as a record, `<job id>@run<n>`, before a new run takes the id
        over (the id is the resume and idempotency key: `content:<uploadId>` for every request on an
        upload), so the jobs page shows every run. A record is never claimed, retried or run again
        (`superseded_by` names the job). Returns the ended run, None when the job is active (or gone).
        Its id is fixed by the run number: an enqueue cut short after this write writes nothing twice."""
        ended = self.collection.find_one({"_id": job_id, "state": {"$in": list(FINAL_STATES)}})
        if ended is None:
            return None
        run = ended.get("run") or 0  # (jobs queued before runs were counted: 0)
        record = {**ended, "_id": f"{job_id}@run{run}", "superseded_by": job_id, "holding": False}
        record.pop("checkpoint", None)
        try:
            self.collection.insert_one(record)
        except DuplicateKeyError:
            pass  # written already, by an enqueue cut short or running beside this one
        return ended

    def claim(self, owner: str, lease_seconds: float, kinds: Iterable[str] | None = None,
              job_id: str | None = None) -> Job | None:
        """Atomically take the oldest runnable job of `kinds` (or the one job `job_id`): queued and
        due, queued with a cancel request (it ends at once), or running under a lease that expired
        (its worker died). One update does it, so any number of workers on any hosts can claim."""
        now = utcnow()
        runnable = [{"state": "queued", "not_before": {"$lte": now}},
                    {"state": "queued", "cancel_requested": True},
                    {"state": "running", "lease_expires": {"$lt": now}}]
        query = {"_id": job_id, "$or": [{"state": "queued"}, runnable[2]]} if job_id is not None else \
            {"kind": {"$in": list(kinds or ())}, "$or": runnable}
        doc = self.collection.find_one_and_update(
            query,
            {"$set": {"state": "running", "lease_owner": owner,
                      "lease_expires": now + timedelta(seconds=lease_seconds),
                      "updated_at": now, "started_at": now, "waiting": False},
             "$inc": {"attempts": 1}},
            sort=[("rank", ASCENDING), ("created_at", ASCENDING)], return_document=ReturnDocument.AFTER)
        return Job.from_doc(doc) if doc else None

    def renew_lease(self, job_id: str, owner: str, lease_seconds: float) -> Job:
        """Extend our lease; returns the job (to see cancel requests). Raises LeaseLost."""
        now = utcnow()
        job = self.collection.find_one_and_update(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"lease_expires": now + timedelta(seconds=lease_seconds), "updated_at": now}},
            return_document=ReturnDocument.AFTER)
        if job is None:
            raise LeaseLost(job_id)
        return Job.from_doc(job)

    def save_checkpoint(self, job_id: str, owner: str, checkpoint: dict, stage: str, progress: float,
                        eta_seconds: float | None = None) -> bool:
        """Save the resume point; returns whether a cancel was requested (a commit boundary is where
        a job learns of it, in whichever process holds it). Raises LeaseLost."""
        return self._update_running(job_id, owner, {"checkpoint": checkpoint, "stage": stage, "progress": progress,
                                                    "eta_seconds": eta_seconds})

    def save_progress(self, job_id: str, owner: str, stage: str, progress: float,
                      eta_seconds: float | None = None) -> bool:
        """Progress between checkpoints (the checkpoint stays); returns whether a cancel was requested.
        Raises LeaseLost."""
        return self._update_running(job_id, owner, {"stage": stage, "progress": progress, "eta_seconds": eta_seconds})

    def _update_running(self, job_id: str, owner: str, fields: dict) -> bool:
        job = self.collection.find_one_and_update(
            {"_id": job_id, "lease_owner": owner, "state": "running"}, {"$set": {**fields, "updated_at": utcnow()}},
            projection={"cancel_requested": True})
        if job is None:
            raise LeaseLost(job_id)
        return bool(job.get("cancel_requested"))

    def set_stage(self, job_id: str, owner: str, stage: str) -> None:
        self.collection.update_one({"_id": job_id, "lease_owner": owner},
                                 {"$set": {"stage": stage, "updated_at": utcnow()}})

    def set_result(self, job_id: str, owner: str, result: dict) -> None:
        self.collection.update_one({"_id": job_id, "lease_owner": owner}, {"$set": {"result": result}})

    def finish(self, job_id: str, owner: str, state: str, error: str | None = None) -> bool:
        """End our job. A job asked to cancel never ends `done`: False, and the caller cancels it.
        A part wakes its parent, which decides what the parts' ends mean."""
        now = utcnow()
        query = {"_id": job_id, "lease_owner": owner, "state": "running"}
        if state == "done":
            query["cancel_requested"] = {"$ne": True}
        ended = self.collection.find_one_and_update(
            query,
            {"$set": {"state": state, "stage": state, "finished_at": now, "updated_at": now, "holding": False,
                      "lease_owner": None, "lease_expires": None, "last_error": error,
                      **({"progress": 100.0} if state == "done" else {})}},
            projection={"parent": True, "parent_run": True})
        # The last part to end wakes its parent (two ending at once: the later count sees both
        # ended), and so does any that did not end done.
        parent = (ended or {}).get("parent")
        if parent and (state != "done" or not self.collection.count_documents(
                {"parent": parent, "parent_run": ended.get("parent_run"), "state": {"$in": list(ACTIVE_STATES)}},
                limit=1)):
            self.wake(parent)
        return ended is not None

    def wait(self, job_id: str, owner: str, seconds: float, stage: str) -> bool:
        """Our job waits for others (its parts): queued again, due in `seconds` or when woken, the
        attempt not counted, the checkpoint kept."""
        now = utcnow()
        result = self.collection.update_one(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"state": "queued", "stage": stage, "not_before": now + timedelta(seconds=seconds),
                      "updated_at": now, "lease_owner": None, "lease_expires": None, "waiting": True},
             "$inc": {"attempts": -1}})
        return result.matched_count == 1

    def wake(self, job_id: str) -> None:
        """A waiting job is due now."""
        self.collection.update_one({"_id": job_id, "state": "queued"}, {"$set": {"not_before": utcnow()}})

    def children(self, parent: str, run: int, with_params: bool = False) -> list[Job]:
        """The parts of `parent`'s `run`, in their order: state, rank, last_error and result (and params)."""
        fields = ["state", "rank", "last_error", "result", *(["params"] if with_params else [])]
        return [Job.from_doc(doc) for doc in
                self.collection.find({"parent": parent, "parent_run": run}, fields).sort("rank", ASCENDING)]

    def forget_earlier_children(self, parent: str, run: int) -> int:
        """The parts of `parent`'s earlier runs that have ended (a new run has its own)."""
        return self.collection.delete_many({"parent": parent, "parent_run": {"$ne": run},
                                            "state": {"$in": list(FINAL_STATES)}}).deleted_count

    def share_progress(self, job_id: str, progress: float, eta_seconds: float | None, stage: str) -> None:
        """A waiting job's progress as its parts make it (never going back)."""
        self.collection.update_one({"_id": job_id, "state": "queued", "waiting": True},
                                   {"$max": {"progress": progress},
                                    "$set": {"eta_seconds": eta_seconds, "stage": stage}})

    def retry_later(self, job_id: str, owner: str, error: str, delay_seconds: float) -> bool:
        """Queue the job again after `delay_seconds`; each failed attempt stays in its `history`."""
        now = utcnow()
        retry_at = now + timedelta(seconds=delay_seconds)
        result = self.collection.update_one(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"state": "queued", "stage": "retry_wait", "last_error": error, "updated_at": now,
                      "not_before": retry_at, "lease_owner": None, "lease_expires": None},
             "$push": {"history": {"$each": [{"failed_at": now, "error": error, "retry_at": retry_at}],
                                   "$slice": -20}}})
        return result.matched_count == 1

    def release(self, job_id: str, owner: str) -> bool:
        """Hand a job back on shutdown; a graceful stop does not count as an attempt."""
        now = utcnow()
        result = self.collection.update_one(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"state": "queued", "stage": "released", "not_before": now, "updated_at": now,
                      "lease_owner": None, "lease_expires": None},
             "$inc": {"attempts": -1}})
        return result.matched_count == 1

    def cancel_requested(self, job_id: str) -> bool:
        job = self.collection.find_one({"_id": job_id}, {"cancel_requested": True})
        return bool(job and job.get("cancel_requested"))

    def request_cancel(self, job_id: str) -> Job | None:
        """Ask an active job to stop, and every active part of it."""
        job = self.collection.find_one_and_update(
            {"_id": job_id, "state": {"$in": list(ACTIVE_STATES)}},
            {"$set": {"cancel_requested": True, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER)
        if job is not None:
            self.collection.update_many({"parent": job_id, "state": {"$in": list(ACTIVE_STATES)}},
                                        {"$set": {"cancel_requested": True, "updated_at": utcnow()}})
        return Job.maybe(job)

    def summary(self) -> dict:
        """{"states": {(kind, state): n}, "queued": {kind: (n, age of the oldest in seconds)}}."""
        now = utcnow()
        states = {(row["_id"]["kind"], row["_id"]["state"]): row["n"] for row in self.collection.aggregate(
            [{"$group": {"_id": {"kind": "$kind", "state": "$state"}, "n": {"$sum": 1}}}])}
        queued = {row["_id"]: (row["n"], max(0.0, (now - row["oldest"]).total_seconds()))
                  for row in self.collection.aggregate([{"$match": {"state": "queued"}},
                                                      {"$group": {"_id": "$kind", "n": {"$sum": 1},
                                                                  "oldest": {"$min": "$created_at"}}}])}
        return {"states": states, "queued": queued}


    def unfinished(self, kinds: Iterable[str]) -> list[Job]:
        return [Job.from_doc(doc) for doc in
                self.collection.find({"kind": {"$in": list(kinds)}, "state": {"$in": list(ACTIVE_STATES)}})]

    def make_due_now(self, job_ids: Iterable[str]) -> int:
        """Warm start: queued jobs waiting out a backoff become due, expired leases stay claimable."""
        ids = list(job_ids)
        if not ids:
            return 0
        return self.collection.update_many({"_id": {"$in": ids}, "state": "queued"},
                                         {"$set": {"not_before": utcnow()}}).modified_count


    def list(self, kind: str | None = None, state: str | None = None, limit: int = 200) -> list[Job]:
        """Jobs of every kind (or of one kind, one state), newest first, without their checkpoints;
        the parts of long uploads only when asked for by their kind (their upload's job shows them)."""
        query = {**({"kind": kind} if kind else {"parent": {"$exists": False}}), **({"state": state} if state else {})}
        return [Job.from_doc(doc) for doc in
                self.collection.find(query, {"checkpoint": 0}).sort([("created_at", -1), ("_id", 1)]).limit(limit)]


    def retry(self, job_id: str, states: Iterable[str] = ("failed",)) -> Job | None:
        """An operator's retry: a job in one of `states` is queued again, due now, with its params,
        its attempts reset and a fresh start (no checkpoint: a failed run's partial output was
        removed). The error it ended with moves to its history. Atomic: None when the job is not in
        one of `states` (any more). A job that held its video holds it again: VideoBusy when another
        job holds it now."""
        job = self.collection.find_one({"_id": job_id}, {"holds": 1, "last_error": 1, "finished_at": 1, "state": 1})
        if job is None:
            return None
        now = utcnow()
        entry = {"failed_at": job.get("finished_at"), "error": job.get("last_error"), "ended": job.get("state"),
                 "retried_at": now, "retried_by": "operator"}
        try:
            return Job.maybe(self.collection.find_one_and_update(
                {"_id": job_id, "state": {"$in": list(states)}, "superseded_by": {"$exists": False}},
                {"$set": {"state": "queued", "stage": "queued", "attempts": 0, "not_before": now, "updated_at": now,
                          "lease_owner": None, "lease_expires": None, "started_at": None, "finished_at": None,
                          "last_error": None, "checkpoint": {}, "progress": 0.0, "eta_seconds": None,
                          "cancel_requested": False, "holding": job.get("holds") is not None},
                 "$unset": {"result": ""}, "$inc": {"run": 1},
                 "$push": {"history": {"$each": [entry], "$slice": -20}}},
                return_document=ReturnDocument.AFTER))
        except DuplicateKeyError:
            holder = self.collection.find_one({"holds": job.get("holds"), "holding": True}, {"_id": 1})
            raise VideoBusy(holder["_id"] if holder else "another job") from None

    def enqueue_dataset_build(self, version_id, max_attempts: int) -> tuple[bool, Job]:
        return self.enqueue(dataset_job_id(version_id), DATASET_KIND, str(version_id),
                            {"version_id": str(version_id)}, max_attempts)

    def existing(self, job_ids: Iterable[str]) -> set[str]:
        """Which of these jobs exist."""
        return {job["_id"] for job in self.collection.find({"_id": {"$in": list(job_ids)}}, {"_id": 1})}

    def delete_ended(self, job_id: str) -> bool:
        """Forget a job that has ended (a running one stays), with the records of its earlier runs and
        its parts that have ended."""
        if self.collection.delete_one({"_id": job_id, "state": {"$in": list(FINAL_STATES)}}).deleted_count != 1:
            return False
        self.collection.delete_many({"$or": [{"superseded_by": job_id},
                                             {"parent": job_id, "state": {"$in": list(FINAL_STATES)}}]})
        return True
