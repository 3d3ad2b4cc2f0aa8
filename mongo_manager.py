"""Every MongoDB read and write of the service, each named after what it does.

Collections the Node platform owns or reads keep its names and field names (CONTRACT §2).
`ProcessingJob` is ours: one document per unit of background work, the single source of truth
for queueing, leases and resume. Nothing here needs more than a MongoDB 6.0 server offers.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Iterable

import pymongo
from bson import ObjectId
from pymongo import ASCENDING, MongoClient, ReadPreference, ReturnDocument, UpdateOne, WriteConcern
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.uri_parser import parse_uri

from media_service.contract import (
    ACTIVE_STATES,
    DATASET_KIND,
    DATASET_VERSIONS,
    FINAL_STATES,
    FRAMES,
    JOBS,
    MASTER_DATA,
    PROJECTS,
    TASKS,
    TRY_IT,
    UPLOADS,
    ContentJobParams,
    UploadStatus,
    content_job_id,
    dataset_job_id,
    task_index,
)

log = logging.getLogger(__name__)


def either_form(object_id: ObjectId) -> dict:
    """Matches a reference stored as an ObjectId or as its 24-hex string (LoopBack writes either)."""
    return {"$in": [object_id, str(object_id)]}


def utcnow() -> datetime:
    # MongoDB stores milliseconds; truncating here keeps values equal after a round trip.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def connect(uri: str, default_db: str, timeout_ms: int = 3000) -> "MongoManager":
    """A client that notices an unreachable server within `timeout_ms` (not pymongo's 30 s), and a
    hung one within 30 s, so requests answer 503 and workers retry instead of hanging.

    Retryable writes and reads stay on whatever the URI says: through an election (a primary killed
    or stepped down) pymongo sends a claim, a lease renewal or a commit once more to the new primary
    under the same transaction number, so the server applies it once (jobs.py rides out the rest)."""
    db_name = parse_uri(uri).get("database") or default_db
    client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                         socketTimeoutMS=30000, tz_aware=True, appname="media-service",
                         retryWrites=True, retryReads=True)
    return MongoManager(client, db_name)


def member_command(host: str, name: str, value=1, **options) -> dict:
    """An admin command on one server by itself (`host:port`), not through a replica set: what
    embedded_mongo.ReplicaSet uses to initiate a set, ask who is primary and step one down."""
    with MongoClient(host, directConnection=True, serverSelectionTimeoutMS=5000) as client:
        return client.admin.command(name, value, **options)


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or did not answer in time (as opposed to refusing a write)."""
    return isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout)


def is_slow_call(exc: BaseException) -> bool:
    """A call that ran out of time on a server that was reachable (not "no server to talk to")."""
    return (isinstance(exc, PyMongoError) and exc.timeout
            and not isinstance(exc, ServerSelectionTimeoutError))


def deadline(seconds: float):
    """Every database call inside the `with` block must finish within `seconds` in all."""
    return pymongo.timeout(seconds)


class LeaseLost(RuntimeError):
    """Another worker owns the job now (our lease expired); stop without writing more."""


class VideoBusy(RuntimeError):
    """Another job holds this video (same project and video name) until it ends."""

    def __init__(self, holder: str):
        super().__init__(f"held by {holder}")
        self.holder = holder


class MongoManager:
    def __init__(self, client: MongoClient, db_name: str):
        self.client = client
        # Every write waits for the journal (unless the URI says otherwise): a kill -9 of mongod
        # otherwise loses the writes of up to its last 100 ms, such as a checkpoint already acted on.
        # And for a majority of a replica set's members: a write only one member has is rolled back
        # when that member dies and another is elected, so a job would resume from a checkpoint that
        # no longer exists. On a single server "majority" is that server (the same cost as w: 1).
        concern = client.write_concern.document
        if "w" not in concern:
            concern = {**concern, "w": "majority"}
        if "j" not in concern and concern.get("w") != 0:
            concern = {**concern, "j": True}
        # Reads that decide (claims, leases, checkpoints, a commit's existing task) go to the primary,
        # whatever readPreference the URI names: a secondary may lag behind what was just written.
        self.db = client.get_database(db_name, write_concern=WriteConcern(**concern),
                                      read_preference=ReadPreference.PRIMARY)

    # -- lifecycle ---------------------------------------------------------------------------
    def ping(self) -> bool:
        self.client.admin.command("ping")
        return True

    def ensure_indexes(self) -> None:
        self.db[TASKS].create_index([("uploadId", ASCENDING), ("taskName", ASCENDING)])
        self.db[TASKS].create_index([("projectId", ASCENDING), ("videoName", ASCENDING)])
        self.db[FRAMES].create_index([("taskId", ASCENDING), ("frameId", ASCENDING)])
        self.db[JOBS].create_index([("state", ASCENDING), ("created_at", ASCENDING)])
        # The claim's branch for cancel requests: without it every claim read every queued job
        # (bench/bench_scale.py: 50 claimers fell to 25 claims/s; with it, 350).
        self.db[JOBS].create_index([("state", ASCENDING), ("cancel_requested", ASCENDING), ("created_at", ASCENDING)])
        self.db[JOBS].create_index([("kind", ASCENDING), ("key", ASCENDING)])
        self.db[TRY_IT].create_index("createdAt")
        # One job at a time per video: a job holds its video while queued or running.
        self.db[JOBS].create_index("holds", unique=True, name="one_job_per_video",
                                   partialFilterExpression={"holding": True})
        # Two task docs can never name one stored object (only docs with a key take part).
        try:
            self.db[TASKS].create_index("S3_url", unique=True, name="one_task_per_object",
                                        partialFilterExpression={"S3_url": {"$type": "string"}})
        except OperationFailure as exc:  # data written before this rule (e.g. by the old service)
            log.error("task documents already share object keys (%s), so the database cannot refuse new "
                      "duplicates yet: find them with db.AnnotationTask.aggregate([{$group: {_id: '$S3_url', "
                      "n: {$sum: 1}}}, {$match: {n: {$gt: 1}}}]) and remove the extra ones", exc.details or exc)

    def close(self) -> None:
        self.client.close()

    # -- uploads (Node creates them; we update in place) ------------------------------------
    def get_upload(self, upload_id: ObjectId) -> dict | None:
        return self.db[UPLOADS].find_one({"_id": upload_id})

    def get_project(self, project_id: ObjectId) -> dict | None:
        return self.db[PROJECTS].find_one({"_id": either_form(project_id)}, {"_id": 1})

    def record_upload_error(self, upload_id: ObjectId, error_code: int, message: str,
                            only_if_waiting: bool = False) -> bool:
        """A rejected request or a failed run: status 2 with an error the UI can show. A rejection
        (`only_if_waiting`) changes only an upload still waiting for its run (status 0), never one
        that has finished."""
        query = {"_id": upload_id, **({"status": UploadStatus.PROCESSING} if only_if_waiting else {})}
        return self.db[UPLOADS].update_one(query, {"$set": {
            "status": UploadStatus.FAILED,
            "errorMessage": {"error_code": error_code, "message": message},
            "updatedAt": utcnow(),
        }}).matched_count == 1

    def mark_upload_started(self, upload_id: ObjectId, params: ContentJobParams, new_run: bool) -> None:
        fields = {
            "status": UploadStatus.PROCESSING,
            "errorMessage": {},
            "frame_rate": params.frame_rate,
            "frames_per_task": params.frames_per_task,
            "request_type": params.request_type,
            "request_annotation_version": params.auto_anno_version,
            "updatedAt": utcnow(),
        }
        if new_run:
            # As the old service did when processing began: Node's UI calls an upload timed out three
            # hours after createdAt, so a long queue must not count.
            fields.update(progress=0, taskCount=0, createdAt=utcnow(), sourceFilePath=params.content_path)
        self.db[UPLOADS].update_one({"_id": upload_id}, {"$set": fields, "$unset": {"finishedAt": ""}})

    def set_upload_progress(self, upload_id: ObjectId, progress: float, task_count: int,
                            eta_seconds: float | None = None) -> None:
        # $max keeps progress from ever going backwards, whoever writes it.
        self.db[UPLOADS].update_one({"_id": upload_id}, {
            "$max": {"progress": round(float(progress), 2)},
            "$set": {"taskCount": task_count, "etaSeconds": eta_seconds, "updatedAt": utcnow()},
        })

    def mark_upload_succeeded(self, upload_id: ObjectId, task_count: int, extra: dict | None = None) -> None:
        self.db[UPLOADS].update_one({"_id": upload_id}, {"$set": {
            "status": UploadStatus.SUCCEEDED, "progress": 100, "taskCount": task_count, "etaSeconds": 0,
            "errorMessage": {}, "finishedAt": utcnow(), "updatedAt": utcnow(), **(extra or {}),
        }})

    def add_upload_to_project(self, project_id: ObjectId, upload_id: ObjectId) -> None:
        """Once, in the form the project's list already uses (strings when LoopBack wrote strings)."""
        project = self.db[PROJECTS].find_one({"_id": either_form(project_id)}, {"contentUploads": 1}) or {}
        listed = project.get("contentUploads") or []
        entry = str(upload_id) if listed and all(isinstance(item, str) for item in listed) else upload_id
        self.db[PROJECTS].update_one({"_id": either_form(project_id), "contentUploads": {"$nin": [upload_id,
                                                                                                  str(upload_id)]}},
                                     {"$push": {"contentUploads": entry}})

    # -- tasks and frames --------------------------------------------------------------------
    def find_video_tasks(self, project_id: ObjectId, video_name: str) -> list[dict]:
        """Tasks already cut from this video in this project (their object keys would collide)."""
        return list(self.db[TASKS].find({"projectId": either_form(project_id), "videoName": video_name},
                                        {"_id": 1, "S3_url": 1, "uploadId": 1, "AutoAnnotationVersion": 1}))

    def video_tasks_in_order(self, project_id: ObjectId, video_name: str) -> list[dict]:
        """The video's tasks, task-0 first (fields auto-annotation needs)."""
        tasks = list(self.db[TASKS].find({"projectId": either_form(project_id), "videoName": video_name},
                                         {"_id": 1, "taskName": 1, "S3_url": 1, "frameCount": 1,
                                          "AutoAnnotationVersion": 1, "uploadId": 1}))
        return sorted(tasks, key=lambda task: task_index(task["taskName"]))

    def project_labels(self, project_id: ObjectId) -> list[dict]:
        project = self.db[PROJECTS].find_one({"_id": either_form(project_id)}, {"labels": 1}) or {}
        return [entry for entry in project.get("labels") or [] if isinstance(entry, dict)]

    def task_frames(self, task_id: ObjectId) -> list[dict]:
        return list(self.db[FRAMES].find({"taskId": task_id}, {"frameId": 1, "boxes": 1}).sort("frameId", ASCENDING))

    def set_frame_boxes(self, boxes_by_frame: dict[ObjectId, list[dict]]) -> None:
        """Each frame doc's boxes replaced (by frame doc id), in one batched write."""
        if boxes_by_frame:
            self.db[FRAMES].bulk_write([UpdateOne({"_id": frame_id}, {"$set": {"boxes": boxes, "isEmpty": not boxes}})
                                        for frame_id, boxes in boxes_by_frame.items()], ordered=False)

    def set_task_annotation_version(self, task_id: ObjectId, version: int) -> None:
        self.db[TASKS].update_one({"_id": task_id}, {"$max": {"AutoAnnotationVersion": version}})

    def max_auto_annotation_version(self, upload_id: ObjectId) -> int:
        doc = self.db[TASKS].find_one({"uploadId": upload_id}, {"AutoAnnotationVersion": 1},
                                      sort=[("AutoAnnotationVersion", -1)])
        return int(doc.get("AutoAnnotationVersion") or 0) if doc else 0

    def commit_task(self, task_fields: dict, frame_docs: list[dict]) -> ObjectId:
        """Write one task and its frames; safe to repeat after a crash at any point.

        The task is upserted by (uploadId, taskName), so a repeat updates the same document;
        its frames are replaced as a whole, so a repeat leaves exactly one set.
        """
        key = {"uploadId": task_fields["uploadId"], "taskName": task_fields["taskName"]}
        created_at = task_fields.pop("createdAt")
        task_id = self.db[TASKS].find_one_and_update(
            key, {"$set": task_fields, "$setOnInsert": {"createdAt": created_at}}, projection={"_id": 1},
            upsert=True, return_document=ReturnDocument.AFTER)["_id"]
        self.db[FRAMES].delete_many({"taskId": task_id})
        if frame_docs:
            self.db[FRAMES].insert_many([{**f, "taskId": task_id} for f in frame_docs], ordered=True)
        return task_id

    def delete_tasks(self, task_ids: Iterable[ObjectId]) -> int:
        """Frames first, then tasks: a crash in between leaves the task list to retry from."""
        ids = list(task_ids)
        if not ids:
            return 0
        self.db[FRAMES].delete_many({"taskId": {"$in": ids}})
        return self.db[TASKS].delete_many({"_id": {"$in": ids}}).deleted_count

    # -- dataset versions (Node creates them; the build writes taskStatus, exports, frame fields) ----
    def get_dataset_version(self, version_id: ObjectId) -> dict | None:
        return self.db[DATASET_VERSIONS].find_one({"_id": version_id})

    def get_task(self, task_id: ObjectId) -> dict | None:
        return self.db[TASKS].find_one({"_id": task_id})

    def yolo_export_format(self) -> dict:
        """MasterData's description of the YOLO export (its `category` and names), if Node keeps one."""
        doc = self.db[MASTER_DATA].find_one({"exportFormats.YOLO": {"$exists": True}}, {"exportFormats.YOLO": 1})
        return dict((doc or {}).get("exportFormats", {}).get("YOLO") or {})

    def start_dataset_build(self, version_id: ObjectId, task_ids: list[str], seed: int, build: str,
                            yolo: dict) -> dict:
        """The build's record: a pending `taskStatus` entry for every task it lacks (a whole new
        record when Node removed it), the augmentation seed once, the YOLO export at progress 0."""
        now = utcnow()
        self.db[DATASET_VERSIONS].update_one({"_id": version_id, "augmentationSeed": {"$exists": False}},
                                             {"$set": {"augmentationSeed": seed}})
        self.db[DATASET_VERSIONS].update_one(
            {"_id": version_id, "$or": [{"taskStatus": {"$exists": False}}, {"taskStatus.tasks": {"$exists": False}}]},
            {"$set": {"taskStatus": {"state": "pending", "build": build, "tasks": []},
                      "exportFormats.YOLO": {**yolo, "progress": 0, "createdAt": now, "lastUpdatedAt": now}}})
        version = self.get_dataset_version(version_id)
        known = {entry.get("task") for entry in version["taskStatus"].get("tasks", [])}
        missing = [{"task": task, "state": "pending", "error": "none", "imageCount": 0, "imageDataSize": 0,
                    "augmentationFileCounts": {}, "attempts": 0} for task in task_ids if task not in known]
        if missing:
            self.db[DATASET_VERSIONS].update_one({"_id": version_id},
                                                 {"$push": {"taskStatus.tasks": {"$each": missing}}})
        return self.get_dataset_version(version_id)

    def set_dataset_task(self, version_id: ObjectId, task: str, fields: dict, attempt: bool = False) -> None:
        update = {"$set": {f"taskStatus.tasks.$.{name}": value for name, value in fields.items()}}
        if attempt:
            update["$inc"] = {"taskStatus.tasks.$.attempts": 1}
        self.db[DATASET_VERSIONS].update_one({"_id": version_id, "taskStatus.tasks.task": task}, update)

    def set_dataset_progress(self, version_id: ObjectId, progress: float) -> None:
        """exportFormats.YOLO.progress rises (never falls) while the build runs."""
        self.db[DATASET_VERSIONS].update_one({"_id": version_id}, {
            "$max": {"exportFormats.YOLO.progress": round(float(progress), 1)},
            "$set": {"exportFormats.YOLO.lastUpdatedAt": utcnow()}})

    def finish_dataset(self, version_id: ObjectId, fields: dict) -> None:
        now = utcnow()
        self.db[DATASET_VERSIONS].update_one({"_id": version_id}, {"$set": {
            "taskStatus.state": "complete", "exportFormats.YOLO.progress": 100,
            "exportFormats.YOLO.lastUpdatedAt": now, "updatedAt": now, **fields}})

    def fail_dataset(self, version_id: ObjectId, message: str) -> None:
        self.db[DATASET_VERSIONS].update_one({"_id": version_id}, {"$set": {
            "taskStatus.state": "failed", "taskStatus.error": message, "updatedAt": utcnow()}})

    def enqueue_dataset_build(self, version_id: ObjectId, max_attempts: int) -> tuple[bool, dict]:
        return self.enqueue_job(dataset_job_id(version_id), DATASET_KIND, str(version_id),
                                {"version_id": str(version_id)}, max_attempts)

    def pending_dataset_versions(self) -> list[ObjectId]:
        """Versions whose build began and did not end (the warm start finishes them)."""
        return [doc["_id"] for doc in self.db[DATASET_VERSIONS].find({"taskStatus.state": "pending"}, {"_id": 1})]

    def dataset_frames(self, task_id: ObjectId) -> list[dict]:
        return list(self.db[FRAMES].find({"taskId": task_id}, {"frameId": 1, "boxes": 1, "datasetVersions": 1})
                    .sort("frameId", ASCENDING))

    def set_frame_dataset_fields(self, version_id: ObjectId, frames: list[tuple[ObjectId, dict, dict]]) -> None:
        """For each (frame doc id, its fields, its entry for this version): the fields set, and the
        `datasetVersions` entry of the version updated in place, or added when Node did not add one,
        in one batched write."""
        ids = [version_id, str(version_id)]  # Node may store the id either way
        writes = []
        for frame_id, fields, entry in frames:
            writes.append(UpdateOne({"_id": frame_id}, {"$set": fields}))
            writes.append(UpdateOne({"_id": frame_id, "datasetVersions.versionId": {"$in": ids}},
                                    {"$set": {f"datasetVersions.$.{k}": v for k, v in entry.items()}}))
            writes.append(UpdateOne({"_id": frame_id, "datasetVersions.versionId": {"$nin": ids}},
                                    {"$push": {"datasetVersions": {"versionId": version_id, **entry}}}))
        if writes:
            self.db[FRAMES].bulk_write(writes, ordered=True)

    # -- jobs --------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> dict | None:
        return self.db[JOBS].find_one({"_id": job_id})

    def enqueue_job(self, job_id: str, kind: str, key: str, params: dict, max_attempts: int,
                    holds: str | None = None) -> tuple[bool, dict]:
        """Queue a job unless one with this id is queued or running.

        Returns (created, job). A finished job with the same id is replaced by the new run;
        an active one is returned untouched, so a repeated request starts nothing. With `holds`
        (e.g. a video's name in its project), the job holds it until it ends: queuing a second
        job for the same thing raises VideoBusy (a unique index decides, so it is atomic).
        """
        now = utcnow()
        fresh = {
            "kind": kind, "key": key, "state": "queued", "stage": "queued", "params": params,
            "attempts": 0, "max_attempts": max_attempts, "lease_owner": None, "lease_expires": None,
            "not_before": now, "created_at": now, "updated_at": now, "started_at": None,
            "finished_at": None, "last_error": None, "checkpoint": {}, "progress": 0.0,
            "cancel_requested": False, "holds": holds, "holding": holds is not None, "history": [],
        }
        try:
            try:
                self.db[JOBS].insert_one({"_id": job_id, **fresh, "run": 1})
                return True, self.get_job(job_id)
            except DuplicateKeyError as exc:
                if "one_job_per_video" in str(exc):
                    raise
            replaced = self.db[JOBS].find_one_and_update(
                {"_id": job_id, "state": {"$in": list(FINAL_STATES)}},
                {"$set": fresh, "$inc": {"run": 1}}, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            holder = self.db[JOBS].find_one({"holds": holds, "holding": True}, {"_id": 1})
            raise VideoBusy(holder["_id"] if holder else "another job") from None
        if replaced:
            return True, replaced
        return False, self.get_job(job_id)

    def claim_next_job(self, owner: str, lease_seconds: float, kinds: Iterable[str]) -> dict | None:
        """Atomically take the oldest runnable job: queued and due, cancel-requested, or
        running under a lease that expired (its worker died)."""
        now = utcnow()
        query = {"kind": {"$in": list(kinds)}, "$or": [
            {"state": "queued", "not_before": {"$lte": now}},
            {"state": "queued", "cancel_requested": True},
            {"state": "running", "lease_expires": {"$lt": now}},
        ]}
        return self.db[JOBS].find_one_and_update(
            query,
            {"$set": {"state": "running", "lease_owner": owner,
                      "lease_expires": now + timedelta(seconds=lease_seconds),
                      "updated_at": now, "started_at": now},
             "$inc": {"attempts": 1}},
            sort=[("created_at", ASCENDING)], return_document=ReturnDocument.AFTER)

    def claim_job(self, job_id: str, owner: str, lease_seconds: float) -> dict | None:
        """Take this one job, when it is due (queued) or its worker died (lease expired)."""
        now = utcnow()
        return self.db[JOBS].find_one_and_update(
            {"_id": job_id, "$or": [{"state": "queued"}, {"state": "running", "lease_expires": {"$lt": now}}]},
            {"$set": {"state": "running", "lease_owner": owner,
                      "lease_expires": now + timedelta(seconds=lease_seconds), "updated_at": now, "started_at": now},
             "$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)

    def renew_lease(self, job_id: str, owner: str, lease_seconds: float) -> dict:
        """Extend our lease; returns the job (to see cancel requests). Raises LeaseLost."""
        now = utcnow()
        job = self.db[JOBS].find_one_and_update(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"lease_expires": now + timedelta(seconds=lease_seconds), "updated_at": now}},
            return_document=ReturnDocument.AFTER)
        if job is None:
            raise LeaseLost(job_id)
        return job

    def save_checkpoint(self, job_id: str, owner: str, checkpoint: dict, stage: str, progress: float,
                        eta_seconds: float | None = None) -> bool:
        """Save the resume point; returns whether a cancel was requested (a commit boundary is where
        a job learns of it, in whichever process holds it). Raises LeaseLost."""
        job = self.db[JOBS].find_one_and_update(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"checkpoint": checkpoint, "stage": stage, "progress": progress, "eta_seconds": eta_seconds,
                      "updated_at": utcnow()}},
            projection={"cancel_requested": True})
        if job is None:
            raise LeaseLost(job_id)
        return bool(job.get("cancel_requested"))

    def set_job_stage(self, job_id: str, owner: str, stage: str) -> None:
        self.db[JOBS].update_one({"_id": job_id, "lease_owner": owner},
                                 {"$set": {"stage": stage, "updated_at": utcnow()}})

    def set_job_result(self, job_id: str, owner: str, result: dict) -> None:
        self.db[JOBS].update_one({"_id": job_id, "lease_owner": owner}, {"$set": {"result": result}})

    def finish_job(self, job_id: str, owner: str, state: str, error: str | None = None) -> bool:
        """End our job. A job asked to cancel never ends `done`: False, and the caller cancels it."""
        now = utcnow()
        query = {"_id": job_id, "lease_owner": owner, "state": "running"}
        if state == "done":
            query["cancel_requested"] = {"$ne": True}
        result = self.db[JOBS].update_one(
            query,
            {"$set": {"state": state, "stage": state, "finished_at": now, "updated_at": now, "holding": False,
                      "lease_owner": None, "lease_expires": None, "last_error": error,
                      **({"progress": 100.0} if state == "done" else {})}})
        return result.matched_count == 1

    def retry_job_later(self, job_id: str, owner: str, error: str, delay_seconds: float) -> bool:
        """Queue the job again after `delay_seconds`; each failed attempt stays in its `history`."""
        now = utcnow()
        retry_at = now + timedelta(seconds=delay_seconds)
        result = self.db[JOBS].update_one(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"state": "queued", "stage": "retry_wait", "last_error": error, "updated_at": now,
                      "not_before": retry_at, "lease_owner": None, "lease_expires": None},
             "$push": {"history": {"$each": [{"failed_at": now, "error": error, "retry_at": retry_at}],
                                   "$slice": -20}}})
        return result.matched_count == 1

    def release_job(self, job_id: str, owner: str) -> bool:
        """Hand a job back on shutdown; a graceful stop does not count as an attempt."""
        now = utcnow()
        result = self.db[JOBS].update_one(
            {"_id": job_id, "lease_owner": owner, "state": "running"},
            {"$set": {"state": "queued", "stage": "released", "not_before": now, "updated_at": now,
                      "lease_owner": None, "lease_expires": None},
             "$inc": {"attempts": -1}})
        return result.matched_count == 1

    def cancel_requested(self, job_id: str) -> bool:
        job = self.db[JOBS].find_one({"_id": job_id}, {"cancel_requested": True})
        return bool(job and job.get("cancel_requested"))

    def request_cancel(self, job_id: str) -> dict | None:
        return self.db[JOBS].find_one_and_update(
            {"_id": job_id, "state": {"$in": list(ACTIVE_STATES)}},
            {"$set": {"cancel_requested": True, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER)

    def job_summary(self) -> dict:
        """{"states": {(kind, state): n}, "queued": {kind: (n, age of the oldest in seconds)}}."""
        now = utcnow()
        states = {(row["_id"]["kind"], row["_id"]["state"]): row["n"] for row in self.db[JOBS].aggregate(
            [{"$group": {"_id": {"kind": "$kind", "state": "$state"}, "n": {"$sum": 1}}}])}
        queued = {row["_id"]: (row["n"], max(0.0, (now - row["oldest"]).total_seconds()))
                  for row in self.db[JOBS].aggregate([{"$match": {"state": "queued"}},
                                                      {"$group": {"_id": "$kind", "n": {"$sum": 1},
                                                                  "oldest": {"$min": "$created_at"}}}])}
        return {"states": states, "queued": queued}

    def uploads_left_waiting(self, older_than: datetime) -> list[dict]:
        """Uploads Node created (status 0) whose request never reached the service: no job exists
        for them, and they were created before `older_than` (a newer one may still be on its way)."""
        waiting = list(self.db[UPLOADS].find({"status": 0, "createdAt": {"$lt": older_than}}))
        if not waiting:
            return []
        known = {job["_id"] for job in self.db[JOBS].find(
            {"_id": {"$in": [f"content:{upload['_id']}" for upload in waiting]}}, {"_id": 1})}
        return [upload for upload in waiting if f"content:{upload['_id']}" not in known]

    def find_unfinished_jobs(self, kinds: Iterable[str]) -> list[dict]:
        return list(self.db[JOBS].find({"kind": {"$in": list(kinds)}, "state": {"$in": list(ACTIVE_STATES)}}))

    def make_jobs_due_now(self, job_ids: Iterable[str]) -> int:
        """Warm start: queued jobs waiting out a backoff become due, expired leases stay claimable."""
        ids = list(job_ids)
        if not ids:
            return 0
        return self.db[JOBS].update_many({"_id": {"$in": ids}, "state": "queued"},
                                         {"$set": {"not_before": utcnow()}}).modified_count

    # -- the operator's jobs pages (media_service/web/jobs/) -----------------------------------
    def list_jobs(self, kind: str | None = None, state: str | None = None, limit: int = 200) -> list[dict]:
        """Jobs of every kind (or of one kind, one state), newest first, without their checkpoints."""
        query = {**({"kind": kind} if kind else {}), **({"state": state} if state else {})}
        return list(self.db[JOBS].find(query, {"checkpoint": 0}).sort([("created_at", -1), ("_id", 1)])
                    .limit(limit))

    def upload_tasks(self, upload_id: ObjectId) -> list[dict]:
        """An upload's task docs, task-0 first (the fields a person looks at)."""
        tasks = list(self.db[TASKS].find({"uploadId": upload_id}, {
            "taskName": 1, "videoName": 1, "frameStart": 1, "frameEnd": 1, "frameCount": 1, "frameRate": 1,
            "videoResolutionWidth": 1, "videoResolutionHeight": 1, "videoDuration": 1, "S3_url": 1,
            "status": 1, "taskStatus": 1, "AutoAnnotationVersion": 1}))
        return sorted(tasks, key=lambda task: task_index(task.get("taskName", "")))

    def retry_job(self, job_id: str, states: Iterable[str] = ("failed",)) -> dict | None:
        """An operator's retry: a job in one of `states` is queued again, due now, with its params,
        its attempts reset and a fresh start (no checkpoint: a failed run's partial output was
        removed). The error it ended with moves to its history. Atomic: None when the job is not in
        one of `states` (any more). A job that held its video holds it again: VideoBusy when another
        job holds it now."""
        job = self.db[JOBS].find_one({"_id": job_id}, {"holds": 1, "last_error": 1, "finished_at": 1, "state": 1})
        if job is None:
            return None
        now = utcnow()
        entry = {"failed_at": job.get("finished_at"), "error": job.get("last_error"), "ended": job.get("state"),
                 "retried_at": now, "retried_by": "operator"}
        try:
            return self.db[JOBS].find_one_and_update(
                {"_id": job_id, "state": {"$in": list(states)}},
                {"$set": {"state": "queued", "stage": "queued", "attempts": 0, "not_before": now, "updated_at": now,
                          "lease_owner": None, "lease_expires": None, "started_at": None, "finished_at": None,
                          "last_error": None, "checkpoint": {}, "progress": 0.0, "eta_seconds": None,
                          "cancel_requested": False, "holding": job.get("holds") is not None},
                 "$unset": {"result": ""}, "$inc": {"run": 1},
                 "$push": {"history": {"$each": [entry], "$slice": -20}}},
                return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            holder = self.db[JOBS].find_one({"holds": job.get("holds"), "holding": True}, {"_id": 1})
            raise VideoBusy(holder["_id"] if holder else "another job") from None

    def reopen_upload(self, upload_id: ObjectId) -> dict | None:
        """Before a retried run: the upload is processing again (status 0, no error, progress 0).
        Returns the fields as they were (for `restore_upload`), None when there is no such upload."""
        return self.db[UPLOADS].find_one_and_update(
            {"_id": upload_id},
            {"$set": {"status": UploadStatus.PROCESSING, "errorMessage": {}, "progress": 0, "taskCount": 0,
                      "updatedAt": utcnow()}, "$unset": {"finishedAt": ""}},
            projection={"status": 1, "errorMessage": 1, "progress": 1, "taskCount": 1, "finishedAt": 1},
            return_document=ReturnDocument.BEFORE)

    def restore_upload(self, upload_id: ObjectId, before: dict) -> None:
        """Undo `reopen_upload` when the retry could not be queued (still waiting, nothing started)."""
        fields = {name: before[name] for name in ("status", "errorMessage", "progress", "taskCount", "finishedAt")
                  if name in before}
        self.db[UPLOADS].update_one({"_id": upload_id, "status": UploadStatus.PROCESSING},
                                    {"$set": {**fields, "updatedAt": utcnow()}})

    def create_project_and_upload(self, project: dict, upload: dict) -> None:
        """The docs Node creates before it calls processContent (the jobs page's try-it form)."""
        self.db[PROJECTS].insert_one(project)
        self.db[UPLOADS].insert_one(upload)

    # -- the try-it form's records (ours: what it made, for [Jobs] try_it_retention_hours) ------------
    def record_try_it(self, upload_id: ObjectId, project_id: ObjectId, folder: str | None) -> None:
        """Written before the form saves or creates anything, so a try cut short is found too.
        `folder`: the folder it saves the video in (relative to the content folder), None when it saved none."""
        self.db[TRY_IT].insert_one({"_id": upload_id, "projectId": project_id, "folder": folder,
                                    "createdAt": utcnow(), "claimedUntil": None})

    def expired_try_its(self, cutoff: datetime, limit: int = 100) -> list[dict]:
        return list(self.db[TRY_IT].find({"createdAt": {"$lt": cutoff}}).sort("createdAt", ASCENDING).limit(limit))

    def claim_try_it(self, upload_id: ObjectId, lease_seconds: float) -> dict | None:
        """One sweeper at a time removes a try (several worker processes sweep); a lease, so a
        sweeper that dies mid-way leaves it to the next."""
        now = utcnow()
        return self.db[TRY_IT].find_one_and_update(
            {"_id": upload_id, "$or": [{"claimedUntil": None}, {"claimedUntil": {"$lt": now}}]},
            {"$set": {"claimedUntil": now + timedelta(seconds=lease_seconds)}}, return_document=ReturnDocument.AFTER)

    def forget_try_it(self, upload_id: ObjectId, project_id: ObjectId) -> bool:
        """The try's job (when ended), upload and project docs, then its record (last: a crash before
        leaves it to the next sweep). A project that holds another upload (a person added one) stays.
        Returns whether the project went."""
        self.db[JOBS].delete_one({"_id": content_job_id(upload_id), "state": {"$in": list(FINAL_STATES)}})
        self.db[UPLOADS].delete_one({"_id": upload_id})
        others = self.db[UPLOADS].find_one({"projectId": either_form(project_id)}, {"_id": 1})
        removed = others is None and self.db[PROJECTS].delete_one({"_id": project_id}).deleted_count == 1
        self.db[TRY_IT].delete_one({"_id": upload_id})
        return removed
