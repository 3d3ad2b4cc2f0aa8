"""On S3 a build stores its objects in the background (`datasets/uploads`): a task is recorded
complete only once every object of it is stored, and an upload that fails fails its task, which the
next attempt finishes with the same objects as an uninterrupted build."""
from __future__ import annotations

import threading

import pytest

from media_service.errors import StorageError
from tests.test_datasets import make_version, written_keys


class FailsOnce:
    """The service's storage (real SeaweedFS); the fifth upload under `key_part` fails, as a 503
    would after botocore's retries, once other uploads of its task are under way."""

    def __init__(self, inner, key_part: str):
        self.inner, self.key_part, self.seen = inner, key_part, 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        if self.key_part in key:
            with self.lock:
                self.seen += 1
                fail = self.seen == 5
            if fail:
                raise StorageError(f"upload of {key} failed: SlowDown")
        self.inner.put_bytes(key, data, content_type)


def test_a_failed_background_upload_fails_its_task_and_the_next_attempt_stores_the_same_objects(
        make_service, s3_server):
    from media_service.datasets.build import DatasetBuilder, TaskFailed
    from tests.s3_server import BUCKET, S3_PORT

    service = make_service(STORAGE_URL=f"s3://{BUCKET}/ds-uploads", S3_ENDPOINT_URL=f"http://127.0.0.1:{S3_PORT}",
                           S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test-secret")
    version = make_version(service, frames=6, per_task=3)
    failing_task = str(version.tasks[1]["_id"])
    storage = FailsOnce(service.services.storage, f"/{failing_task}/")
    builder = DatasetBuilder(service.services.mongo, storage, service.settings)
    with pytest.raises(TaskFailed, match="SlowDown"):
        builder.build(version.id)
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    states = {entry["task"]: entry["state"] for entry in doc["taskStatus"]["tasks"]}
    assert states == {str(version.tasks[0]["_id"]): "complete", failing_task: "pending"}
    # The failed task's frames say nothing of the version yet: no keys of objects that may be missing.
    frames = service.db.AnnotationFrame.find({"taskId": version.tasks[1]["_id"]})
    assert all("imageUrl" not in frame for frame in frames)

    builder.build(version.id)
    doc = service.db.AnnotationDatasetVersion.find_one({"_id": version.id})
    assert doc["taskStatus"]["state"] == "complete"
    listing = s3_server.list_objects_v2(Bucket=BUCKET, Prefix=f"ds-uploads/dataset/{version.group}/")
    stored_keys = {obj["Key"] for obj in listing.get("Contents", [])}
    assert len(stored_keys) == 6 * 4 * 3 + 3  # (image, thumbnail, labels) x (frame + 3 augmentations), 3 zips
    assert written_keys(service, version) - stored_keys == {task["S3_url"] for task in version.tasks}
