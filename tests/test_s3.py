"""The S3 storage path against a real S3 server on loopback (SeaweedFS from PyPI)."""
from __future__ import annotations

import pytest

from media_service.errors import StorageError
from media_service.storage import LocalStorage
from tests.helpers import fields_for, new_upload, post_node, wait_for_upload
from tests.media import decode_frames, ffprobe_stream, make_video, moov_before_mdat, read_number
from tests.s3_server import BUCKET, S3_PORT


def test_tasks_are_stored_in_s3_under_the_contract_keys(make_service, s3_server, tmp_path):
    service = make_service(STORAGE_URL=f"s3://{BUCKET}/env-a", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret")
    make_video(service.content / "uploads" / "s3clip.mp4", 40, 25)
    upload_id, project_id = new_upload(service.db, "./uploads/s3clip.mp4", frames_per_task=4)
    fields = fields_for(upload_id, project_id, "./uploads/s3clip.mp4")
    assert post_node(f"{service.url}/api/processContent", fields).status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 1, upload.get("errorMessage")
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
    keys = sorted(obj["Key"] for obj in s3_server.list_objects_v2(Bucket=BUCKET, Prefix="env-a/")["Contents"])
    assert keys == sorted(t["S3_url"] for t in tasks)  # the full key in the bucket, as Node presigns it
    assert keys[0] == f"env-a/contents/{project_id}/task-0-s3clip/task-0-s3clip.mp4"
    for task in tasks:
        local = tmp_path / f"{task['taskName']}.mp4"
        s3_server.download_file(BUCKET, task["S3_url"], str(local))
        assert moov_before_mdat(local) and ffprobe_stream(local)["pix_fmt"] == "yuv420p"
        assert [read_number(p) for p in decode_frames(local)] == task["original_frames"]
    head = s3_server.head_object(Bucket=BUCKET, Key=keys[0])
    assert head["ContentType"] == "video/mp4"

    # force_write 1 removes the stored objects of the earlier run before writing new ones.
    fields.update(force_write="1", frame_rate="1")
    assert post_node(f"{service.url}/api/processContent", fields).status_code == 202
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    keys = [obj["Key"] for obj in s3_server.list_objects_v2(Bucket=BUCKET, Prefix="env-a/")["Contents"]]
    assert keys == [f"env-a/contents/{project_id}/task-0-s3clip/task-0-s3clip.mp4"]


def test_wrong_bucket_fails_the_upload_clearly(make_service, s3_server):
    service = make_service(STORAGE_URL="s3://no-such-bucket-here", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret", JOBS_MAX_ATTEMPTS="2")
    make_video(service.content / "uploads" / "nob.mp4", 5, 25)
    upload_id, project_id = new_upload(service.db, "./uploads/nob.mp4")
    assert post_node(f"{service.url}/api/processContent",
                     fields_for(upload_id, project_id, "./uploads/nob.mp4")).status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    message = upload["errorMessage"]["message"]
    # A permanent error fails at once: one attempt, 422, the bucket and the key named, no local path.
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 422
    assert message.startswith("storage_refused") and ("NoSuchBucket" in message or "AccessDenied" in message)
    assert "s3://no-such-bucket-here" in message and "contents/" in message and "task-0-nob.mp4" in message
    assert "/tmp" not in message and "tasks/" not in message.split("contents/")[0]
    job = service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert job["attempts"] == 1 and job["state"] == "failed"
    assert service.db.AnnotationTask.count_documents({}) == 0


def test_local_storage_refuses_keys_that_escape(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    for key in ("../x", "/etc/passwd", "a/../../b", "", "a//b"):
        with pytest.raises(StorageError):
            storage.get_bytes(key)
