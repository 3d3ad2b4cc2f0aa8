"""What the jobs page's try-it form makes is removed after `[Jobs] try_it_retention_hours` (issue 21
item 9): the saved video and its folder, the task videos in storage, the task and frame docs, the
job, upload and project docs. Nothing the form did not make is touched.

Expiry is made by moving a try's record into the past in the database (never by waiting), and the
sweep is the worker processes' own: it runs when a worker process starts and then periodically.
"""
from __future__ import annotations

from datetime import timedelta

import requests
from bson import ObjectId

from mongo_manager import utcnow
from tests.conftest import NODE_KEY
from tests.helpers import fields_for, new_upload, post_node, wait_for, wait_for_upload
from tests.media import make_video

KEY = {"X-API-Key": NODE_KEY}


def try_it(service, clip) -> dict:
    with open(clip, "rb") as handle:
        answer = requests.post(f"{service.url}/jobs/try", headers=KEY, data={"frame_rate": "5"},
                               files={"video": (clip.name, handle)}, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()


def stored_objects(service) -> set[str]:
    return set(service.services.storage.list_keys(""))


def node_upload(service, name: str):
    """An upload made as Node makes it (not by the try-it form), cut into tasks."""
    make_video(service.content / "uploads" / name, 10, 25)
    upload_id, project_id = new_upload(service.db, f"./uploads/{name}")
    answer = post_node(f"{service.url}/api/processContent", fields_for(upload_id, project_id, f"./uploads/{name}"))
    assert answer.status_code == 202, answer.text
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    return upload_id, project_id


def expire(service, upload_id, hours: float = 25) -> None:
    """Make this try older than the retention (its record's creation time in the past)."""
    result = service.db.TryItUpload.update_one({"_id": upload_id},
                                               {"$set": {"createdAt": utcnow() - timedelta(hours=hours)}})
    assert result.matched_count == 1


def everything_of(service, upload_id, project_id, folder) -> dict:
    task_ids = [task["_id"] for task in service.db.AnnotationTask.find({"uploadId": upload_id})]
    return {"upload": service.db.AnnotationContentUpload.count_documents({"_id": upload_id}),
            "project": service.db.AnnotationProject.count_documents({"_id": project_id}),
            "tasks": len(task_ids),
            "frames": service.db.AnnotationFrame.count_documents({"taskId": {"$in": task_ids}}),
            "job": service.db.ProcessingJob.count_documents({"_id": f"content:{upload_id}"}),
            "record": service.db.TryItUpload.count_documents({"_id": upload_id}),
            "objects": len([key for key in stored_objects(service) if str(project_id) in key]),
            "folder": folder.exists()}


def test_an_expired_try_is_removed_whole_by_the_workers_sweep_and_nothing_else(make_service, tmp_path):
    service = make_service()
    node_id, node_project = node_upload(service, "node.mp4")
    node_before = everything_of(service, node_id, node_project, service.content / "uploads" / "node.mp4")
    objects_before = stored_objects(service)

    expired = try_it(service, make_video(tmp_path / "old try.mp4", 12, 25))
    fresh = try_it(service, make_video(tmp_path / "new try.mp4", 12, 25))
    for answer in (expired, fresh):
        assert wait_for_upload(service.db, ObjectId(answer["upload_id"]))["status"] == 1
    old_id, old_project = ObjectId(expired["upload_id"]), ObjectId(expired["project_id"])
    old_folder = service.content / "uploads" / expired["project_id"]
    before = everything_of(service, old_id, old_project, old_folder)
    assert before == {"upload": 1, "project": 1, "tasks": 1, "frames": 3, "job": 1, "record": 1, "objects": 1,
                      "folder": True}, before
    new_id, new_project = ObjectId(fresh["upload_id"]), ObjectId(fresh["project_id"])
    new_folder = service.content / "uploads" / fresh["project_id"]
    new_before = everything_of(service, new_id, new_project, new_folder)

    expire(service, old_id)
    # A worker process sweeps when it starts (then every hour, or every retention when shorter).
    make_service(MONGODB_DB_NAME=service.settings.mongodb.db_name)
    wait_for(lambda: service.db.TryItUpload.count_documents({"_id": old_id}) == 0, what="the sweep")
    assert everything_of(service, old_id, old_project, old_folder) == {
        "upload": 0, "project": 0, "tasks": 0, "frames": 0, "job": 0, "record": 0, "objects": 0, "folder": False}
    # The try still inside its retention and the upload Node made are untouched.
    assert everything_of(service, new_id, new_project, new_folder) == new_before
    assert everything_of(service, node_id, node_project, service.content / "uploads" / "node.mp4") == node_before
    assert objects_before <= stored_objects(service)


def test_a_try_of_a_file_already_in_the_content_folder_keeps_that_file(make_service):
    """content_path instead of an upload: the form saved nothing, so it deletes no file."""
    service = make_service()
    clip = make_video(service.content / "uploads" / "mine.mp4", 10, 25)
    answer = requests.post(f"{service.url}/jobs/try", headers=KEY,
                           data={"frame_rate": "5", "content_path": "uploads/mine.mp4"}, timeout=30)
    assert answer.status_code == 202, answer.text
    upload_id, project_id = ObjectId(answer.json()["upload_id"]), ObjectId(answer.json()["project_id"])
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    expire(service, upload_id)
    make_service(MONGODB_DB_NAME=service.settings.mongodb.db_name)
    wait_for(lambda: service.db.TryItUpload.count_documents({"_id": upload_id}) == 0, what="the sweep")
    assert everything_of(service, upload_id, project_id, clip)["folder"] and clip.exists()
    assert service.db.AnnotationContentUpload.count_documents({"_id": upload_id}) == 0
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0


def test_a_try_whose_job_is_still_queued_waits_and_a_project_node_added_uploads_to_stays(make_service, tmp_path):
    idle = make_service(APP_RUN_WORKERS="false")  # the job stays queued: no worker in this process
    answer = try_it(idle, make_video(tmp_path / "queued.mp4", 12, 25))
    upload_id, project_id = ObjectId(answer["upload_id"]), ObjectId(answer["project_id"])
    expire(idle, upload_id)
    from media_service.content.retention import sweep
    assert sweep(idle.services.mongo, idle.services.storage, idle.settings) == 0  # its job is queued
    assert idle.db.TryItUpload.count_documents({"_id": upload_id}) == 1
    # Its job ends; a person has meanwhile added an upload of their own to the try's project.
    idle.db.ProcessingJob.update_one({"_id": f"content:{upload_id}"}, {"$set": {"state": "cancelled"}})
    other = idle.db.AnnotationContentUpload.insert_one({"projectId": project_id, "status": 1}).inserted_id
    assert sweep(idle.services.mongo, idle.services.storage, idle.settings) == 1
    assert idle.db.AnnotationContentUpload.count_documents({"_id": upload_id}) == 0
    assert idle.db.AnnotationProject.count_documents({"_id": project_id}) == 1  # it holds another upload
    assert idle.db.AnnotationContentUpload.count_documents({"_id": other}) == 1
    assert not (idle.content / "uploads" / str(project_id)).exists()


def test_retention_zero_keeps_tries_for_ever(make_service, tmp_path):
    service = make_service(APP_RUN_WORKERS="false", JOBS_TRY_IT_RETENTION_HOURS="0")
    answer = try_it(service, make_video(tmp_path / "keep.mp4", 5, 25))
    upload_id = ObjectId(answer["upload_id"])
    expire(service, upload_id, hours=10_000)
    from media_service.content.retention import sweep
    assert sweep(service.services.mongo, service.services.storage, service.settings) == 0
    assert service.db.AnnotationContentUpload.count_documents({"_id": upload_id}) == 1
    assert (service.content / "uploads" / answer["project_id"]).is_dir()
