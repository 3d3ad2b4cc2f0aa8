"""Path safety (`media_service/paths.py`), end to end: a path a caller names never leads outside its
root, neither when the request arrives nor when a worker opens it after a file or folder on it was
swapped for a link; FIFOs never block a worker; image folder members that link outside are skipped;
the service's own folders are never content."""
from __future__ import annotations

import os

import cv2
import requests

from tests.faces import make_face_clip
from tests.helpers import fields_for, new_upload, post, wait_for, wait_for_upload
from tests.media import make_video


def test_a_source_swapped_for_a_link_after_the_202_is_not_followed(idle_service, tmp_path):
    make_video(idle_service.content / "swap.mp4", 20, 25)
    outside = make_video(tmp_path / "outside" / "secret.mp4", 20, 25)
    upload_id, project_id = new_upload(idle_service.db, "./swap.mp4")
    assert post(idle_service, fields_for(upload_id, project_id, "./swap.mp4")).status_code == 202
    (idle_service.content / "swap.mp4").unlink()
    (idle_service.content / "swap.mp4").symlink_to(outside)  # after the check, before the worker reads it
    idle_service.services.start_workers()
    upload = wait_for_upload(idle_service.db, upload_id)
    assert upload["status"] == 2 and "outside_root" in upload["errorMessage"]["message"]
    assert idle_service.db.AnnotationTask.count_documents({}) == 0


def test_a_folder_on_the_path_swapped_for_a_link_is_refused(idle_service, tmp_path):
    make_video(idle_service.content / "sub" / "v.mp4", 20, 25)
    make_video(tmp_path / "elsewhere" / "v.mp4", 20, 25)
    upload_id, project_id = new_upload(idle_service.db, "./sub/v.mp4")
    assert post(idle_service, fields_for(upload_id, project_id, "./sub/v.mp4")).status_code == 202
    (idle_service.content / "sub").rename(idle_service.content / "was-sub")
    (idle_service.content / "sub").symlink_to(tmp_path / "elsewhere")
    idle_service.services.start_workers()
    upload = wait_for_upload(idle_service.db, upload_id)
    assert upload["status"] == 2 and "outside_root" in upload["errorMessage"]["message"]


def test_a_privacy_output_folder_swapped_for_a_link_gets_nothing_written(make_service, tmp_path):
    videos, outside = tmp_path / "videos", tmp_path / "outside"
    make_face_clip(videos / "sub" / "p.mp4", frames=6, audio=False)
    outside.mkdir()
    service = make_service(APP_RUN_WORKERS="false", PRIVACYPAL_VIDEO_DIRECTORY=str(videos))
    assert requests.post(f"{service.url}/process_video", data=b"sub/p.mp4").status_code == 202
    (videos / "sub" / "p.mp4").rename(videos / "p.mp4")
    (videos / "sub").rmdir()
    (videos / "sub").symlink_to(outside)  # the folder the output goes to now leads outside
    service.services.start_workers()
    state = wait_for(lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
        requests.get(f"{service.url}/process_status", params={"filename": "sub/p.mp4", "format": "json"}).json()))
    assert state["state"] == "failed" and "path_changed" in state["error"]
    assert list(outside.iterdir()) == []


def test_a_fifo_never_blocks_a_worker(idle_service):
    os.mkfifo(idle_service.content / "pipe.mp4")
    upload_id, project_id = new_upload(idle_service.db, "./pipe.mp4")
    answer = post(idle_service, fields_for(upload_id, project_id, "./pipe.mp4"))
    assert answer.status_code == 400 and "not a regular file" in answer.json()["message"]
    # Swapped in after the request was accepted: the job fails at once instead of waiting forever.
    make_video(idle_service.content / "later.mp4", 10, 25)
    upload_id, project_id = new_upload(idle_service.db, "./later.mp4")
    assert post(idle_service, fields_for(upload_id, project_id, "./later.mp4")).status_code == 202
    (idle_service.content / "later.mp4").unlink()
    os.mkfifo(idle_service.content / "later.mp4")
    idle_service.services.start_workers()
    upload = wait_for_upload(idle_service.db, upload_id, timeout=30)
    assert upload["status"] == 2 and "not_a_regular_file" in upload["errorMessage"]["message"]


def test_image_folder_members_that_link_outside_are_skipped_and_reported(service, tmp_path):
    folder = service.content / "imgs"
    folder.mkdir(parents=True)
    for name in ("1.png", "2.png"):
        cv2.imwrite(str(folder / name), __import__("numpy").full((40, 60, 3), 128, "uint8"))
    (tmp_path / "private.png").write_bytes((folder / "1.png").read_bytes())
    (folder / "3.png").symlink_to(tmp_path / "private.png")    # out of the content folder
    (folder / "4.png").symlink_to(folder / "2.png")            # inside: fine
    os.mkfifo(folder / "5.png")                                 # never read
    upload_id, project_id = new_upload(service.db, "./imgs", frame_rate=1, content_type=2)
    assert post(service, fields_for(upload_id, project_id, "./imgs", content_type=2, frame_rate=1)).status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 1 and upload["imageCount"] == 3
    assert {s["fileName"]: s["error"] for s in upload["skippedImages"]} == {
        "3.png": "a link to outside the content folder", "5.png": "not a regular file"}


def test_the_services_own_folders_are_never_content(make_service, tmp_path):
    # The default layout: uploads under ./contents, paths relative to the working directory.
    work = tmp_path / "work"
    service = make_service(APP_RUN_WORKERS="false", FOLDERS_CONTENT_BASE=str(work / "contents"),
                           FOLDERS_CONTENT_PATH_BASE=str(work), APP_DATA_DIR=str(work / "data"))
    (work / "contents" / "uploads").mkdir(parents=True)
    (work / "data").mkdir(parents=True, exist_ok=True)
    for path in (".", "./data", "./contents"):
        upload_id, project_id = new_upload(service.db, path, content_type=2)
        answer = post(service, fields_for(upload_id, project_id, path, content_type=2))
        assert answer.status_code == 400, path
    # A content folder that contains the service's data still refuses it.
    wide = make_service(APP_RUN_WORKERS="false", FOLDERS_CONTENT_BASE=str(work), FOLDERS_CONTENT_PATH_BASE=str(work),
                        APP_DATA_DIR=str(work / "data"))
    upload_id, project_id = new_upload(wide.db, "./data", content_type=2)
    answer = post(wide, fields_for(upload_id, project_id, "./data", content_type=2))
    assert answer.status_code == 400 and "service's own" in answer.json()["message"]
