"""The unchanged Node platform's flows, replayed end to end (issue 17): the upload doc Node
creates -> processContent with auto-annotation -> tasks -> boxes drawn on the platform -> a version
prepared as Node prepares it (CONTRACT §2) -> createDataSet without a key from loopback -> every
URL and key written into the documents opened over HTTP the way Node opens them. On local storage
and on S3 (SeaweedFS) with a prefix."""
from __future__ import annotations

import pytest
import requests
from bson import ObjectId

from tests.helpers import fields_for, new_upload, post_node, wait_for_upload
from tests.media import make_video
from tests.test_datasets import AUGMENTATIONS, FRAME_BOXES, LABELS, render_with_object, wait_built


def written(db, upload_id, version_id) -> tuple[set[str], set[str]]:
    """(object keys, URLs) the service wrote into the documents of this upload and version."""
    keys, urls = set(), set()
    tasks = list(db.AnnotationTask.find({"uploadId": upload_id}))
    keys |= {task["S3_url"] for task in tasks}
    for frame in db.AnnotationFrame.find({"taskId": {"$in": [task["_id"] for task in tasks]}}):
        keys |= {frame["imageUrl"], frame["thumbnailUrl"]}
        urls |= {frame["awsUrl"], frame["awsThumbnailUr"]}
        for entry in frame["datasetVersions"]:
            keys |= set(entry["textFiles"].values())
            for files in entry["augmentationImages"].values():
                keys |= {files["imageUrl"], files["thumbnailUrl"], *files["textFiles"].values()}
                urls |= {files["awsImageUrl"], files["awsThumbnailUrl"]}
    version = db.AnnotationDatasetVersion.find_one({"_id": version_id})
    keys |= {version["exportFormats"]["YOLO"]["file"], version["exportFormats"]["YOLO"]["sample"],
             version["exportFormats"]["COCO"]["file"]}
    return keys, urls


@pytest.mark.parametrize("storage", ["local", "s3-prefix"])
def test_node_drives_content_auto_annotation_and_a_dataset_build(make_service, s3_server, storage):
    from tests.s3_server import BUCKET, S3_PORT

    s3 = {"STORAGE_URL": f"s3://{BUCKET}/node-flow", "S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
          "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test-secret"}
    service = make_service(**(s3 if storage == "s3-prefix" else {}))
    db = service.db

    # Node: the upload doc, then processContent with tasks plus auto-annotations (request_type 1).
    make_video(service.content / "uploads" / "street.mp4", 20, 10, size=(320, 240), render=render_with_object)
    upload_id, project_id = new_upload(db, "./uploads/street.mp4", frame_rate=10, frames_per_task=5)
    answer = post_node(f"{service.url}/api/processContent", fields_for(
        upload_id, project_id, "./uploads/street.mp4", frame_rate=10, request_type=1, auto_anno_version=1))
    assert answer.status_code == 202, answer.text
    upload = wait_for_upload(db, upload_id)
    assert upload["status"] == 1 and upload["taskCount"] == 4, upload.get("errorMessage")
    tasks = list(db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
    assert all(task["AutoAnnotationVersion"] == 1 for task in tasks)

    # The platform: annotators draw boxes; Node prepares the version and marks the frames' splits.
    version_id, group = ObjectId(), ObjectId()
    for task in tasks:
        for frame in db.AnnotationFrame.find({"taskId": task["_id"]}):
            db.AnnotationFrame.update_one({"_id": frame["_id"]}, {"$set": {
                "boxes": FRAME_BOXES, "isEmpty": False, "status": 1,
                "datasetVersions": [{"versionId": version_id, "datasetType": 1 if frame["frameId"] <= 3 else 2}]}})
    db.MasterData.insert_one({"exportFormats": {"YOLO": {"category": "Object Detection", "name": "YOLO",
                                                         "fileType": "zip"}}})
    db.AnnotationDatasetVersion.insert_one({
        "_id": version_id, "dataSetGroupId": group, "versionNo": "1.0.0",
        "taskList": [str(task["_id"]) for task in tasks], "labelAttributeList": LABELS,
        "splitCount": [{"percentage": 70}, {"percentage": 30}, {"percentage": 0}], "augmentationTypes": AUGMENTATIONS})

    # Node: createDataSet with only data_version_id, from loopback.
    answer = post_node(f"{service.url}/api/createDataSet", {"data_version_id": str(version_id)})
    assert answer.status_code == 201, answer.text
    assert wait_built(service, version_id)["state"] == "done"

    # Every URL opens as it is; every key opens the way Node opens it.
    keys, urls = written(db, upload_id, version_id)
    assert len(keys) == 4 + 20 * 4 * 3 + 3 and len(urls) == 20 * 4 * 2
    for url in urls:
        assert requests.get(url, timeout=10).status_code == 200, url
    for key in keys:
        if storage == "s3-prefix":  # Node presigns the key as it is
            assert key.startswith("node-flow/"), key
            link = s3_server.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
        else:  # local storage: the service's own signed link for that key
            link = service.services.storage.url(key, 300)
        assert requests.get(link, timeout=10).status_code == 200, key
