"""The connection, and every read and write of the collections the Node platform owns or reads,
each named after what it does (reached through `media_service.mongo`, or the root door `mongo_manager`).

Those collections keep Node's names and field names (CONTRACT §2). `ProcessingJob` is ours and
has a store of its own, `MongoManager.jobs` (media_service/mongo/job_store.py): the single source of
truth for queueing, leases and resume. Nothing here needs more than a MongoDB 6.0 server offers.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Iterable

import pymongo
from bson import ObjectId
from pymongo import ASCENDING, MongoClient, ReadPreference, ReturnDocument, UpdateOne, WriteConcern
from pymongo.errors import (
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.uri_parser import parse_uri

from media_service.contract import (
    DATASET_VERSIONS,
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
    task_index,
)
from media_service.mongo.clock import utcnow
from media_service.mongo.job_store import JobStore
from media_service.platform_docs import (
    frame_boxes_fields,
    upload_failed_fields,
    upload_progress_update,
    upload_reopened_fields,
    upload_started_fields,
    upload_succeeded_fields,
)

log = logging.getLogger(__name__)


def either_form(object_id: ObjectId) -> dict:
    """Matches a reference stored as an ObjectId or as its 24-hex string (LoopBack writes either)."""
    return {"$in": [object_id, str(object_id)]}


def connect(uri: str, default_db: str, timeout_ms: int = 3000) -> "MongoManager":
    """A client that notices an unreachable server within `timeout_ms` (not pymongo's 30 s), and a
    hung one within 30 s, so requests answer 503 and workers retry instead of hanging.

    Retryable writes and reads stay on whatever the URI says: through an election (a primary killed
    or stepped down) pymongo sends a claim, a lease renewal or a commit once more to the new primary
    under the same transaction number, so the server applies it once (worker_pool.py rides out the rest)."""
    db_name = parse_uri(uri).get("database") or default_db
    client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                         socketTimeoutMS=30000, tz_aware=True, appname="media-service",
                         retryWrites=True, retryReads=True)
    return MongoManager(client, db_name)


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
        self.jobs = JobStore(self.db[JOBS])  # ProcessingJob: every job read and write (mongo/job_store.py)

    # -- lifecycle ---------------------------------------------------------------------------
    def ping(self) -> bool:
        self.client.admin.command("ping")
        return True

    def ensure_indexes(self) -> None:
        self.db[TASKS].create_index([("uploadId", ASCENDING), ("taskName", ASCENDING)])
        self.db[TASKS].create_index([("projectId", ASCENDING), ("videoName", ASCENDING)])
        self.db[FRAMES].create_index([("taskId", ASCENDING), ("frameId", ASCENDING)])
        self.jobs.ensure_indexes()
        self.db[TRY_IT].create_index("createdAt")
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
        return self.db[UPLOADS].update_one(query, {"$set": upload_failed_fields(error_code, message, utcnow())}
                                           ).matched_count == 1

    def mark_upload_started(self, upload_id: ObjectId, params: ContentJobParams, new_run: bool) -> None:
        self.db[UPLOADS].update_one({"_id": upload_id}, {"$set": upload_started_fields(params, new_run, utcnow()),
                                                         "$unset": {"finishedAt": ""}})

    def set_upload_progress(self, upload_id: ObjectId, progress: float, task_count: int,
                            eta_seconds: float | None = None) -> None:
        self.db[UPLOADS].update_one({"_id": upload_id},
                                    upload_progress_update(progress, task_count, eta_seconds, utcnow()))

    def upload_box_count(self, upload_id: ObjectId) -> int:
        """The boxes on all the frames of an upload's tasks."""
        task_ids = [task["_id"] for task in self.db[TASKS].find({"uploadId": upload_id}, {"_id": 1})]
        counted = list(self.db[FRAMES].aggregate([
            {"$match": {"taskId": {"$in": task_ids}}},
            {"$group": {"_id": None, "boxes": {"$sum": {"$size": {"$ifNull": ["$boxes", []]}}}}}]))
        return counted[0]["boxes"] if counted else 0

    def upload_task_names(self, upload_id: ObjectId) -> list[str]:
        """The names of the tasks an upload has now."""
        return [task["taskName"] for task in self.db[TASKS].find({"uploadId": upload_id}, {"taskName": 1})]

    def mark_upload_succeeded(self, upload_id: ObjectId, task_count: int, extra: dict | None = None) -> None:
        """Status 1, once a run (a run starts at status 0: a repeat after a crash changes nothing)."""
        self.db[UPLOADS].update_one({"_id": upload_id, "status": {"$ne": UploadStatus.SUCCEEDED}},
                                    {"$set": upload_succeeded_fields(task_count, extra, utcnow())})

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
                                        {"_id": 1, "S3_url": 1, "uploadId": 1, "AutoAnnotationVersion": 1,
                                         "taskName": 1}))

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
            self.db[FRAMES].bulk_write([UpdateOne({"_id": frame_id}, {"$set": frame_boxes_fields(boxes)})
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

    def uploads_left_waiting(self, older_than: datetime) -> list[dict]:
        """Uploads Node created (status 0) whose request never reached the service: no job exists
        for them, and they were created before `older_than` (a newer one may still be on its way)."""
        waiting = list(self.db[UPLOADS].find({"status": 0, "createdAt": {"$lt": older_than}}))
        if not waiting:
            return []
        known = self.jobs.existing(content_job_id(upload["_id"]) for upload in waiting)
        return [upload for upload in waiting if content_job_id(upload["_id"]) not in known]

    # -- the operator's jobs pages (media_service/web/operator/) -----------------------------------
    def upload_tasks(self, upload_id: ObjectId) -> list[dict]:
        """An upload's task docs, task-0 first (the fields a person looks at)."""
        tasks = list(self.db[TASKS].find({"uploadId": upload_id}, {
            "taskName": 1, "videoName": 1, "frameStart": 1, "frameEnd": 1, "frameCount": 1, "frameRate": 1,
            "videoResolutionWidth": 1, "videoResolutionHeight": 1, "videoDuration": 1, "S3_url": 1,
            "status": 1, "taskStatus": 1, "AutoAnnotationVersion": 1}))
        return sorted(tasks, key=lambda task: task_index(task.get("taskName", "")))

    def upload_task(self, upload_id: ObjectId, task_id: ObjectId) -> dict | None:
        """One task of an upload with what its frames list needs (size, rate, source frame numbers)."""
        return self.db[TASKS].find_one({"_id": task_id, "uploadId": upload_id}, {
            "taskName": 1, "frameRate": 1, "videoResolutionWidth": 1, "videoResolutionHeight": 1,
            "original_frames": 1})

    def project_names(self, project_ids) -> dict[str, str]:
        """{project id hex: its name} for the projects that exist and have one."""
        ids = {str(project_id) for project_id in project_ids if project_id and ObjectId.is_valid(str(project_id))}
        forms = [form for hex_id in ids for form in (ObjectId(hex_id), hex_id)]
        return {str(doc["_id"]): str(doc["name"]) for doc in self.db[PROJECTS].find({"_id": {"$in": forms}},
                                                                                      {"name": 1}) if doc.get("name")}

    def reopen_upload(self, upload_id: ObjectId) -> dict | None:
        """Before a retried run: the upload is processing again (status 0, no error, progress 0).
        Returns the fields as they were (for `restore_upload`), None when there is no such upload."""
        return self.db[UPLOADS].find_one_and_update(
            {"_id": upload_id},
            {"$set": upload_reopened_fields(utcnow()), "$unset": {"finishedAt": ""}},
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
        self.jobs.delete_ended(content_job_id(upload_id))
        self.db[UPLOADS].delete_one({"_id": upload_id})
        others = self.db[UPLOADS].find_one({"projectId": either_form(project_id)}, {"_id": 1})
        removed = others is None and self.db[PROJECTS].delete_one({"_id": project_id}).deleted_count == 1
        self.db[TRY_IT].delete_one({"_id": upload_id})
        return removed
