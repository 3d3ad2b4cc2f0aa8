"""The operator's jobs page (issue 14, items 4 and 8): real HTTP against the app, and a real headless
Chromium (Debian's chromium and chromium-driver, driven by Selenium) for the page itself: login,
progress rising, cancel, retry, and the try-it flow up to its task video playing in a <video>."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import requests
from bson import ObjectId
from flask import Flask, request
from itsdangerous import base64_decode, base64_encode

from media_service.web.operator import session as jobs_session
from media_service.web.operator.session import SESSION_COOKIE, csrf_token
from tests.browser import js, wait_js
from tests.conftest import NODE_KEY, ROOT
from tests.helpers import fields_for, free_port, new_upload, post_node, wait_for, wait_for_upload
from tests.media import make_video

SCREENSHOT = ROOT / "docs" / "jobs-page.png"
VIEWPORT = (1280, 900)  # the screenshot's size


# -- helpers ---------------------------------------------------------------------------------------
def logged_in(service) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{service.url}/jobs/login", data={"key": NODE_KEY}, allow_redirects=False, timeout=10)
    assert response.status_code == 303, response.text
    session.headers["X-CSRF-Token"] = csrf_token(session.cookies[SESSION_COOKIE])
    return session


def queue_upload(service, name: str, frame_rate: int, frames_per_task: int = 120) -> ObjectId:
    upload_id, project_id = new_upload(service.db, f"./uploads/{name}", frame_rate=frame_rate,
                                       frames_per_task=frames_per_task)
    response = post_node(f"{service.url}/api/processContent",
                         fields_for(upload_id, project_id, f"./uploads/{name}", frame_rate=frame_rate))
    assert response.status_code == 202, response.text
    return upload_id


# -- sessions (no browser) -------------------------------------------------------------------------
def session_app(keys: tuple[str, ...], hours: float) -> Flask:
    """A bare app with the jobs pages' session on `keys`: POST /in logs in (with a key, a lifetime and
    a clock), GET /check says whether the request's cookie holds a valid session."""
    app = Flask(__name__)
    jobs_session.install(app, keys)

    @app.post("/in")
    def sign_in():
        form = request.form
        jobs_session.start_session(form["key"], float(form["hours"]), now=float(form["now"]) if "now" in form else None)
        return ""

    @app.get("/check")
    def check():
        return "valid" if jobs_session.session_valid(hours) else "refused"
    return app


def issue_session(key: str, hours: float, now: float | None = None, keys: tuple[str, ...] | None = None) -> str:
    """The session cookie of a login with `key` (one of `keys`, by default the only one)."""
    client = session_app(keys or (key,), hours).test_client()
    client.post("/in", data={"key": key, "hours": hours, **({"now": now} if now is not None else {})})
    return client.get_cookie(SESSION_COOKIE).value


def session_valid(token: str, keys: tuple[str, ...], hours: float) -> bool:
    client = session_app(keys, hours).test_client()
    client.set_cookie(SESSION_COOKIE, token)
    return client.get("/check").text == "valid"


def test_session_tokens_are_signed_expire_and_never_hold_the_key():
    token = issue_session(NODE_KEY, hours=1)
    payload, stamp, mac = token.split(".")
    assert NODE_KEY not in token and NODE_KEY.encode() not in base64_decode(payload)
    assert session_valid(token, (NODE_KEY,), 1)
    assert session_valid(token, ("other-key-1", NODE_KEY), 1)          # several keys: any signs
    assert session_valid(token, (NODE_KEY, "other-key-1"), 1)
    assert not session_valid(token, ("other-key-1",), 1)               # its key removed: the session ends
    # Signed with the key its person logged in with, wherever that stands in the list.
    first = issue_session("other-key-1", 1, keys=("other-key-1", NODE_KEY))
    assert session_valid(first, ("other-key-1",), 1) and not session_valid(first, (NODE_KEY,), 1)
    def with_expiry(later: int) -> str:  # the same signature on a payload whose expiry is `later` seconds on
        data = json.loads(base64_decode(payload))
        data["expires"] += later
        return f"{base64_encode(json.dumps(data, separators=(',', ':'))).decode()}.{stamp}.{mac}"
    assert session_valid(with_expiry(0), (NODE_KEY,), 1)                 # (the payload as signed)
    assert not session_valid(with_expiry(60), (NODE_KEY,), 1)            # tampered expiry
    assert not session_valid(issue_session(NODE_KEY, 1, now=time.time() - 7200), (NODE_KEY,), 1)  # expired
    assert not session_valid(issue_session(NODE_KEY, 48), (NODE_KEY,), 1)  # longer than a session lasts now
    assert not session_valid("garbage", (NODE_KEY,), 1) and not session_valid("", (), 1)


# -- HTTP ------------------------------------------------------------------------------------------
def test_nothing_without_the_key_and_the_cookie_is_a_signed_session(service):
    url = service.url
    page = requests.get(f"{url}/jobs", timeout=10)
    assert page.status_code == 401 and 'name="key"' in page.text and 'id="jobs"' not in page.text
    for method, path in [("get", "/api/jobs"), ("get", "/api/jobs/content:x"), ("post", "/api/jobs/content:x/retry"),
                         ("post", "/api/jobs/content:x/cancel"), ("get", "/jobs/media/contents/a/b.mp4"),
                         ("post", "/jobs/try"), ("get", f"/jobs/uploads/{ObjectId()}")]:
        assert getattr(requests, method)(f"{url}{path}", timeout=10).status_code == 401, path
        wrong = getattr(requests, method)(f"{url}{path}", headers={"X-API-Key": "wrong-key-123"}, timeout=10)
        assert wrong.status_code == 401, path
    assert requests.get(f"{url}/api/jobs", headers={"X-API-Key": NODE_KEY}, timeout=10).json() == \
        {"jobs": [], "count": 0}
    assert requests.get(f"{url}/jobs", headers={"X-API-Key": "second-key"}, timeout=10).status_code == 200
    # The page's own assets need no key (nothing secret in them) and come from the app itself.
    script = requests.get(f"{url}/jobs/static/jobs.js", timeout=10)
    assert script.status_code == 200 and "fetch(" in script.text

    refused = requests.post(f"{url}/jobs/login", data={"key": "not-the-key"}, allow_redirects=False, timeout=10)
    assert refused.status_code == 401 and SESSION_COOKIE not in refused.headers.get("Set-Cookie", "")
    answer = requests.post(f"{url}/jobs/login", data={"key": NODE_KEY}, allow_redirects=False, timeout=10)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/jobs")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and NODE_KEY not in cookie
    token = answer.cookies[SESSION_COOKIE]
    jar = {SESSION_COOKIE: token}
    page = requests.get(f"{url}/jobs", cookies=jar, timeout=10)
    assert page.status_code == 200 and 'id="jobs"' in page.text and csrf_token(token) in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"] and "<script src=\"/jobs/static" in page.text
    assert "http://" not in re.sub(r"http://127\.0\.0\.1:\d+", "", page.text)  # no CDN: every asset from the app
    # A cookie alone cannot change anything: a POST also needs the page's CSRF token.
    assert requests.post(f"{url}/api/jobs/content:x/cancel", cookies=jar, timeout=10).status_code == 403
    assert requests.post(f"{url}/api/jobs/content:x/cancel", cookies=jar, headers={"X-CSRF-Token": csrf_token(token)},
                         timeout=10).status_code == 404
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    assert requests.get(f"{url}/api/jobs", cookies={SESSION_COOKIE: forged}, timeout=10).status_code == 401
    # Odd input never makes a 500.
    odd = [("get", "/api/jobs?limit=%C2%B2&state=%00"), ("get", "/api/jobs/%00"), ("get", "/api/jobs/a%ED%A0%80b"),
           ("get", "/jobs/media/%00/x"), ("get", "/jobs/media/" + "a" * 300 + ".mp4"), ("get", "/jobs/uploads/%C2%B2"),
           ("post", "/api/jobs/privacy:a%2Fb%23c.mp4/retry")]
    for method, path in odd:
        answer = getattr(requests, method)(f"{url}{path}", headers={"X-API-Key": NODE_KEY}, timeout=10)
        assert answer.status_code in (200, 404), (path, answer.status_code)
    action_url = f"{url}/api/jobs/privacy:in/a.mp4/cancel"  # a job id may hold slashes; the actions stay apart
    assert requests.get(action_url, headers={"X-API-Key": NODE_KEY}, timeout=10).status_code == 405
    assert set(requests.options(action_url, timeout=10).headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert requests.get(f"{url}/api/jobs/privacy:in/a.mp4", headers={"X-API-Key": NODE_KEY},
                        timeout=10).json()["message"] == "no job privacy:in/a.mp4"
    for bad in ["\u00b2.x.y", "1" * 300, "9999999999999.a.b"]:
        assert requests.get(f"{url}/api/jobs", cookies={SESSION_COOKIE: bad}, timeout=10).status_code == 401
    # Logging out removes the cookie.
    out = requests.post(f"{url}/jobs/logout", cookies=jar, data={"csrf_token": csrf_token(token)},
                        allow_redirects=False, timeout=10)
    assert out.status_code == 303 and f"{SESSION_COOKIE}=;" in out.headers["Set-Cookie"]


def test_the_api_lists_retries_and_cancels(make_service):
    service = make_service(APP_RUN_WORKERS="false")  # nothing runs: every state below is the test's
    session = logged_in(service)
    make_video(service.content / "uploads" / "a.mp4", 10, 25)
    upload_id = queue_upload(service, "a.mp4", frame_rate=5)
    job_id = f"content:{upload_id}"
    jobs = session.get(f"{service.url}/api/jobs", timeout=10).json()["jobs"]
    assert [job["id"] for job in jobs] == [job_id]
    job = jobs[0]
    assert job["state"] == "queued" and job["can_cancel"] and not job["can_retry"]
    assert job["tasks_url"] == f"/jobs/uploads/{upload_id}" and job["params"]["upload_id"] == str(upload_id)
    assert job["params"]["source"] == "<content>/uploads/a.mp4"  # no server path leaves the service
    one = session.get(f"{service.url}{job['url']}", timeout=10).json()
    assert one["upload"]["status"] == 0 and one["tasks"] == []
    assert session.get(f"{service.url}/api/jobs?state=done", timeout=10).json()["count"] == 0
    assert session.get(f"{service.url}/api/jobs/content:nope", timeout=10).status_code == 404

    assert session.post(f"{service.url}{job['url']}/retry", timeout=10).status_code == 409  # not failed
    cancel = session.post(f"{service.url}{job['url']}/cancel", timeout=10)
    assert cancel.status_code == 202 and cancel.json()["job"]["cancel_requested"]
    assert service.db.ProcessingJob.find_one({"_id": job_id})["cancel_requested"] is True

    # A failed job (as a worker leaves it) is queued again with its params, attempts reset, the
    # upload processing again; its error moves to its history.
    params = service.db.ProcessingJob.find_one({"_id": job_id})["params"]
    service.db.ProcessingJob.update_one({"_id": job_id}, {"$set": {
        "state": "failed", "attempts": 3, "last_error": "unreadable_media: broken", "holding": False,
        "checkpoint": {"next_task": 2}, "progress": 40.0, "cancel_requested": False}})
    service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {
        "status": 2, "progress": 40, "errorMessage": {"error_code": 422, "message": "unreadable_media: broken"}}})
    assert session.post(f"{service.url}{job['url']}/cancel", timeout=10).status_code == 409  # not active
    retry = session.post(f"{service.url}{job['url']}/retry", timeout=10)
    assert retry.status_code == 202, retry.text
    stored = service.db.ProcessingJob.find_one({"_id": job_id})
    assert stored["state"] == "queued" and stored["attempts"] == 0 and stored["params"] == params
    assert stored["checkpoint"] == {} and stored["progress"] == 0 and stored["last_error"] is None
    assert stored["holding"] is True and stored["history"][-1]["error"] == "unreadable_media: broken"
    upload = service.db.AnnotationContentUpload.find_one({"_id": upload_id})
    assert upload["status"] == 0 and upload["errorMessage"] == {} and upload["progress"] == 0
    assert upload["nodeOwnedField"] == "keep me"
    assert session.post(f"{service.url}{job['url']}/retry", timeout=10).status_code == 409  # queued now

    # Another upload of the same video holds it now: the retry is refused, the upload left as it was.
    service.db.ProcessingJob.update_one({"_id": job_id}, {"$set": {"state": "failed", "holding": False}})
    service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {
        "status": 2, "errorMessage": {"error_code": 422, "message": "x"}}})
    project_id = service.db.AnnotationContentUpload.find_one({"_id": upload_id})["projectId"]
    other = ObjectId()
    service.db.AnnotationContentUpload.insert_one({"_id": other, "projectId": project_id, "status": 0})
    response = post_node(f"{service.url}/api/processContent", fields_for(other, project_id, "./uploads/a.mp4"))
    assert response.status_code == 202, response.text
    busy = session.post(f"{service.url}{job['url']}/retry", timeout=10)
    assert busy.status_code == 409 and f"content:{other}" in busy.json()["message"]
    upload = service.db.AnnotationContentUpload.find_one({"_id": upload_id})
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 422
    assert service.db.ProcessingJob.find_one({"_id": job_id})["state"] == "failed"


def test_task_videos_stream_with_range_requests_from_local_storage_only(make_service):
    service = make_service(APP_RUN_WORKERS="false")
    storage = Path(service.settings.storage.url)
    key = "contents/p/task-0-v/task-0-v.mp4"
    (storage / key).parent.mkdir(parents=True)
    data = bytes(range(256)) * 40
    (storage / key).write_bytes(data)
    headers = {"X-API-Key": NODE_KEY}
    whole = requests.get(f"{service.url}/jobs/media/{key}", headers=headers, timeout=10)
    assert whole.status_code == 200 and whole.content == data and whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(f"{service.url}/jobs/media/{key}", headers={**headers, "Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = requests.get(f"{service.url}/jobs/media/{key}", headers={**headers, "Range": "bytes=-10"}, timeout=10)
    assert tail.status_code == 206 and tail.content == data[-10:]
    (service.content / "secret.txt").write_text("not an object")
    os.symlink(service.content / "secret.txt", storage / "contents" / "p" / "link.mp4")
    for bad in ["contents/p/link.mp4", "contents/p/../../../content/secret.txt", "contents/p", "contents/none.mp4",
                "contents/p/task-0-v/.task-0-v.mp4.1.2.tmp"]:
        assert requests.get(f"{service.url}/jobs/media/{bad}", headers=headers, timeout=10).status_code == 404, bad


def test_with_s3_storage_the_page_links_presigned_urls_and_serves_nothing(make_service):
    service = make_service(APP_RUN_WORKERS="false", STORAGE_URL="s3://tasks-bucket/pre",
                           S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", S3_ACCESS_KEY_ID="k",
                           S3_SECRET_ACCESS_KEY="secret-key-1")
    upload_id, project_id = ObjectId(), ObjectId()
    service.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 1})
    service.db.AnnotationTask.insert_one({"uploadId": upload_id, "projectId": project_id, "taskName": "task-0-v",
                                          "S3_url": f"contents/{project_id}/task-0-v/task-0-v.mp4"})
    headers = {"X-API-Key": NODE_KEY}
    assert requests.get(f"{service.url}/jobs/media/contents/{project_id}/task-0-v/task-0-v.mp4", headers=headers,
                        timeout=10).status_code == 404
    page = requests.get(f"{service.url}/jobs/uploads/{upload_id}", headers=headers, timeout=10)
    assert page.status_code == 200
    assert re.search(r'<video [^>]*src="http://127\.0\.0\.1:\d+/tasks-bucket/pre/contents/[^"]*X-Amz-Signature',
                     page.text.replace("&amp;", "&"))
    assert "media-src 'self' http://127.0.0.1:" in page.headers["Content-Security-Policy"]


def test_try_it_checks_what_it_is_sent(make_service, tmp_path):
    service = make_service(APP_RUN_WORKERS="false", APP_TRY_IT_MAX_BYTES="20000")
    session = logged_in(service)
    url = f"{service.url}/jobs/try"
    clip = make_video(tmp_path / "small clip.mp4", 5, 25, size=(64, 48))
    assert clip.stat().st_size < 20000
    too_big = session.post(url, data={"frame_rate": "5"}, files={"video": ("big.mp4", b"\0" * 30000)}, timeout=10)
    assert too_big.status_code == 413
    assert session.post(url, data={"frame_rate": "5"}, files={"video": ("x.exe", b"MZ")}, timeout=10).status_code == 415
    assert session.post(url, data={"frame_rate": "0"}, files={"video": ("a.mp4", b"x")}, timeout=10).status_code == 400
    neither = session.post(url, data={"frame_rate": "5"}, timeout=10)
    assert neither.status_code == 400 and neither.json()["message"] == (
        "choose a video file, or type the path of a file already in the content folder (relative to it)")
    both = session.post(url, data={"frame_rate": "5", "content_path": "a.mp4"}, files={"video": ("a.mp4", b"x")},
                        timeout=10)
    assert both.status_code == 400 and both.json()["message"] == "send either a video file or a content_path, not both"
    assert session.post(url, data={"frame_rate": "\u00b2", "content_path": "a.mp4"}, timeout=10).status_code == 400
    outside = session.post(url, data={"frame_rate": "5", "content_path": "../../etc/passwd"}, timeout=10)
    assert outside.status_code == 400
    assert list(service.content.rglob("*.*")) == []  # nothing refused was saved
    assert service.db.AnnotationContentUpload.count_documents({}) == 0

    with open(clip, "rb") as handle:
        answer = session.post(url, data={"frame_rate": "5"}, files={"video": ("../../small clip.mp4", handle)},
                              timeout=10)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    saved = list((service.content / "uploads" / body["project_id"]).iterdir())
    assert len(saved) == 1 and re.fullmatch(r"small-clip-[0-9a-f]{8}\.mp4", saved[0].name)
    assert saved[0].read_bytes() == clip.read_bytes()
    upload = service.db.AnnotationContentUpload.find_one({"_id": ObjectId(body["upload_id"])})
    node_fields = {"projectId": ObjectId(body["project_id"]), "sourceFilePath": f"./uploads/{body['project_id']}/"
                   f"{saved[0].name}", "status": 0, "progress": 0, "frame_rate": 5, "frames_per_task": 120,
                   "content_type": 1, "force_write": 0, "request_annotation_version": 0, "request_type": 0}
    assert {name: upload.get(name) for name in node_fields} == node_fields and "createdAt" in upload
    assert service.db.AnnotationProject.find_one({"_id": ObjectId(body["project_id"])})["contentUploads"] == []
    job = service.db.ProcessingJob.find_one({"_id": body["job_id"]})
    assert job["state"] == "queued" and job["params"]["content_path"] == upload["sourceFilePath"]

    # A file already in the content folder; processContent's own checks answer for it.
    shutil.copy(clip, service.content / "uploads" / "again.mp4")
    by_path = session.post(url, data={"frame_rate": "2", "content_path": "uploads/again.mp4"}, timeout=10)
    assert by_path.status_code == 202 and by_path.json()["content_path"] == "./uploads/again.mp4"
    (service.content / "notes.txt").write_text("x")
    refused = session.post(url, data={"frame_rate": "2", "content_path": "notes.txt"}, timeout=10)
    assert refused.status_code == 415  # processContent's answer; the try's project and upload go at once
    assert service.db.AnnotationContentUpload.find_one({"_id": ObjectId(refused.json()["upload_id"])}) is None
    assert service.db.AnnotationProject.find_one({"_id": ObjectId(refused.json()["project_id"])}) is None
    assert (service.content / "notes.txt").exists()  # a file the form was pointed at stays

    off = make_service(APP_RUN_WORKERS="false", APP_TRY_IT="false")
    page = requests.get(f"{off.url}/jobs", headers={"X-API-Key": NODE_KEY}, timeout=10)
    assert page.status_code == 200 and 'id="try-form"' not in page.text
    assert requests.post(f"{off.url}/jobs/try", headers={"X-API-Key": NODE_KEY}, data={"frame_rate": "5"},
                         timeout=10).status_code == 404


def stored_task(service, frames: int = 3, boxes=None) -> tuple[ObjectId, ObjectId, str]:
    """An upload with one task whose video is in local storage (bytes enough for the HTTP checks),
    its frame docs carrying `boxes(n)`; as a content run leaves them."""
    upload_id, project_id = ObjectId(), ObjectId()
    key = f"contents/{project_id}/task-0-clip/task-0-clip.mp4"
    stored = Path(service.settings.storage.url) / key
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"\0" * 4096)
    service.db.AnnotationProject.insert_one({"_id": project_id, "name": "Street survey", "contentUploads": [upload_id]})
    service.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 1,
                                                   "sourceFilePath": "./uploads/clip.mp4"})
    task_id = service.db.AnnotationTask.insert_one({
        "uploadId": upload_id, "projectId": project_id, "taskName": "task-0-clip", "S3_url": key,
        "frameCount": frames, "frameRate": 5, "videoResolutionWidth": 320, "videoResolutionHeight": 240,
        "original_frames": [1 + 5 * n for n in range(frames)]}).inserted_id
    service.db.AnnotationFrame.insert_many([{"taskId": task_id, "frameId": n, "boxes": boxes(n) if boxes else [],
                                             "isEmpty": not boxes} for n in range(1, frames + 1)])
    service.services.mongo.jobs.enqueue(f"content:{upload_id}", "content", str(upload_id), {
        "upload_id": upload_id, "project_id": project_id, "content_path": "./uploads/clip.mp4"}, 3)
    return upload_id, task_id, key


def test_task_videos_are_linked_by_this_services_own_paths_whatever_host_the_browser_used(make_service):
    """Issue 33: the page at localhost linked its videos at APP_PUBLIC_URL (127.0.0.1), which its own CSP
    (media-src 'self') blocks. The pages link the service's objects by same-origin paths."""
    service = make_service(APP_RUN_WORKERS="false")  # APP_PUBLIC_URL http://127.0.0.1:<port>, as by default
    upload_id, _, key = stored_task(service)
    for host in ("localhost", f"localhost:{service.url.rsplit(':', 1)[1]}", "media.lan", "proxy.example:8443"):
        headers = {"X-API-Key": NODE_KEY, "Host": host}
        page = requests.get(f"{service.url}/jobs/uploads/{upload_id}", headers=headers, timeout=10)
        assert re.findall(r'<video [^>]*src="([^"]*)"', page.text) == [f"/jobs/media/{key}"], host
        job = requests.get(f"{service.url}/api/jobs/content:{upload_id}", headers=headers, timeout=10).json()
        assert [task["video_url"] for task in job["tasks"]] == [f"/jobs/media/{key}"], host
    played = requests.get(f"{service.url}/jobs/media/{key}", headers={"X-API-Key": NODE_KEY}, timeout=10)
    assert played.status_code == 200 and len(played.content) == 4096


def test_the_upload_page_lists_each_frames_source_number_and_boxes(make_service):
    """The frames of a task as the upload page draws them: position, source frame, time, and each box
    with its label, score, colour and (where auto-annotation tracked it) its track."""
    service = make_service(APP_RUN_WORKERS="false")

    def boxes(n):
        auto = {"id": 0, "boundaries": {"id": 0, "type": "rectangle", "label": "person", "color": "#e6194b",
                                        "x": 10 * n, "y": 20, "w": 30, "h": 60, "autoLable_confidance": "0.8731"},
                "attributeValues": {"state": "Ready"}, "trackId": 7, "autoAnnotation": {"version": 1}}
        drawn = {"id": 1, "boundaries": {"id": 1, "type": "rectangle", "label": "car", "color": "#3cb44b",
                                         "x": 100, "y": 100, "w": 50, "h": 40}}
        return [auto, drawn] if n != 2 else []
    upload_id, task_id, _ = stored_task(service, frames=3, boxes=boxes)
    url = f"{service.url}/api/uploads/{upload_id}/tasks/{task_id}/frames"
    assert requests.get(url, timeout=10).status_code == 401
    answer = requests.get(url, headers={"X-API-Key": NODE_KEY}, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["width"], body["height"], body["frame_rate"]) == (320, 240, 5)
    assert [(f["frame"], f["source_frame"], f["time"]) for f in body["frames"]] == [(1, 1, 0.0), (2, 6, 0.2),
                                                                                    (3, 11, 0.4)]
    assert body["frames"][1]["boxes"] == []
    assert body["frames"][2]["boxes"] == [
        {"label": "person", "score": 0.8731, "x": 30, "y": 20, "w": 30, "h": 60, "color": "#e6194b", "track_id": 7,
         "auto": True},
        {"label": "car", "score": None, "x": 100, "y": 100, "w": 50, "h": 40, "color": "#3cb44b", "track_id": None,
         "auto": False}]
    for wrong in (f"/api/uploads/{ObjectId()}/tasks/{task_id}/frames", f"/api/uploads/{upload_id}/tasks/x/frames"):
        assert requests.get(f"{service.url}{wrong}", headers={"X-API-Key": NODE_KEY}, timeout=10).status_code == 404


def test_job_rows_name_the_file_and_the_project(make_service):
    service = make_service(APP_RUN_WORKERS="false")
    upload_id, _, _ = stored_task(service)
    row = requests.get(f"{service.url}/api/jobs", headers={"X-API-Key": NODE_KEY}, timeout=10).json()["jobs"][0]
    assert (row["name"], row["project"]) == ("clip.mp4", "Street survey")
    page = requests.get(f"{service.url}/jobs", headers={"X-API-Key": NODE_KEY}, timeout=10).text
    cell = re.search(rf'<tr data-job-id="content:{upload_id}".*?<td class="job">(.*?)</td>', page, re.S).group(1)
    assert "clip.mp4" in cell and "Street survey" in cell and f"content:{upload_id}" in cell


def test_every_page_has_a_favicon(service):
    icon = requests.get(f"{service.url}/favicon.ico", timeout=10)  # no key: browsers ask before logging in
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/vnd.microsoft.icon"
    assert icon.content[:4] == b"\0\0\1\0"  # an ICO file
    for path in ("/jobs", "/jobs/login"):
        page = requests.get(f"{service.url}{path}", headers={"X-API-Key": NODE_KEY}, timeout=10).text
        assert '<link rel="icon" href="/favicon.ico"' in page, path


def test_try_it_asks_for_auto_annotation_with_the_projects_labels(make_service, tmp_path):
    service = make_service(APP_RUN_WORKERS="false")
    session = logged_in(service)
    page = session.get(f"{service.url}/jobs", timeout=10).text
    assert re.search(r'<select name="request_type" id="try-type">\s*<option value="0"[^>]*>tasks only</option>\s*'
                     r'<option value="1">tasks plus auto-annotation</option>', page)
    proposed = re.search(r'<input [^>]*id="try-labels"[^>]*value="([^"]*)"', page).group(1)
    assert proposed.split(", ")[:2] == ["person", "face"], proposed
    clip = make_video(tmp_path / "walk.mp4", 10, 25, size=(64, 48))
    url = f"{service.url}/jobs/try"
    for bad in ("x" * 65, ",".join(f"l{n}" for n in range(51))):
        with open(clip, "rb") as handle:
            refused = session.post(url, data={"frame_rate": "5", "request_type": "1", "labels": bad},
                                   files={"video": ("walk.mp4", handle)}, timeout=10)
        assert refused.status_code == 400 and "labels" in refused.json()["message"], refused.text
    with open(clip, "rb") as handle:
        answer = session.post(url, data={"frame_rate": "5", "request_type": "1", "labels": " person, Car ,person,, "},
                              files={"video": ("walk.mp4", handle)}, timeout=10)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    project = service.db.AnnotationProject.find_one({"_id": ObjectId(body["project_id"])})
    assert [entry["label"] for entry in project["labels"]] == ["person", "Car"]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", entry["color"]) for entry in project["labels"])
    upload = service.db.AnnotationContentUpload.find_one({"_id": ObjectId(body["upload_id"])})
    assert (upload["request_type"], upload["request_annotation_version"]) == (1, 1)
    params = service.db.ProcessingJob.find_one({"_id": body["job_id"]})["params"]
    assert (params["request_type"], params["auto_anno_version"]) == (1, 1)


def test_a_try_refused_at_once_leaves_nothing_behind(make_service, tmp_path):
    """Refused by processContent (a rate above the video's own): the saved copy, its folder, the project,
    the upload and the try's record go at once, not after [Jobs] try_it_retention_hours."""
    service = make_service(APP_RUN_WORKERS="false")
    session = logged_in(service)
    clip = make_video(tmp_path / "fast.mp4", 10, 25, size=(64, 48))
    with open(clip, "rb") as handle:
        refused = session.post(f"{service.url}/jobs/try", data={"frame_rate": "30"},
                               files={"video": ("fast.mp4", handle)}, timeout=10)
    assert refused.status_code == 400 and "above the video's own frame rate" in refused.json()["message"]
    assert list((service.content / "uploads").iterdir()) == []
    for collection in ("AnnotationProject", "AnnotationContentUpload", "TryItUpload", "ProcessingJob"):
        assert service.db[collection].count_documents({}) == 0, collection


# -- the real browser ------------------------------------------------------------------------------
ROW = "document.querySelector(`tr[data-job-id=\"${arguments[0]}\"]`)"


def row_field(driver, job_id: str, selector: str) -> str | None:
    return js(driver, f"const row = {ROW}; const cell = row && row.querySelector(arguments[1]); "
                      "return cell ? cell.textContent.trim() : null;", job_id, selector)


def click_in_row(driver, job_id: str, action: str) -> None:
    """A real click on the row's button (rows are redrawn each refresh: find it again if it went stale)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        driver.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job_id}"] button[data-action="{action}"]').click()
        return True

    wait_for(clicked, 15, 0.05, f"the {action} button of {job_id}",
             retry_on=(StaleElementReferenceException, NoSuchElementException))


def log_in(driver, service) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{service.url}/jobs")
    assert driver.find_elements(By.ID, "login-form") and not driver.find_elements(By.ID, "jobs")  # refused
    driver.find_element(By.ID, "key").send_keys("wrong-key-123")
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_js(driver, "const e = document.querySelector('#login .error'); return e && /not the service's key/"
                    ".test(e.textContent)", what="the login form to refuse a wrong key")
    driver.find_element(By.ID, "key").send_keys(NODE_KEY)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_js(driver, "return document.getElementById('jobs') !== null", what="the jobs page after login")
    assert js(driver, "return document.cookie") == ""  # HttpOnly: the page's scripts cannot read the session


def test_browser_progress_rises_then_cancel_stops_the_job(make_service, browser, mongo_uri, tmp_path):
    """The page follows a job that a worker of its own holds after its first task and again after its
    second (tests/held_worker.py), so the page never races the job: the progress it shows rises, with
    an ETA, and the operator's cancel stops the job and removes its tasks."""
    from mongo_manager import utcnow
    from tests.held_worker import HeldWorker
    from tests.test_cancel import worker_env

    service = make_service(APP_RUN_WORKERS="false")
    log_in(browser, service)
    make_video(service.content / "uploads" / "ten.mp4", 10, 25, size=(160, 120))
    upload_id = queue_upload(service, "ten.mp4", frame_rate=25, frames_per_task=1)  # 10 tasks
    job_id = f"content:{upload_id}"

    def shown_as_in_the_database(what: str) -> float:
        """The progress the job holds, once the row shows it."""
        progress = service.db.ProcessingJob.find_one({"_id": job_id})["progress"]
        wait_js(browser, f"const r = {ROW}; return r && r.querySelector('.pct').textContent.trim() === arguments[1]",
                job_id, f"{progress:.1f}%", what=what)
        return progress

    # Checkpoint 1 is the run's start, n+1 follows task n: held with 1 task of 10 done, then 2.
    worker = HeldWorker(worker_env(service, mongo_uri, tmp_path), tmp_path / "hold", "2,3", "after")
    try:
        worker.wait_held(service.db, job_id, at=2)
        first = shown_as_in_the_database("the progress of 1 task done")
        # The ETA comes from the rate measured once the attempt has run half a second.
        started = service.db.ProcessingJob.find_one({"_id": job_id})["started_at"]
        wait_for(lambda: (utcnow() - started).total_seconds() > 0.6, what="the attempt to have run 0.6 s")
        worker.release(2)
        worker.wait_held(service.db, job_id, at=3)
        second = shown_as_in_the_database("the progress of 2 tasks done")
        assert 0 < first < second < 100
        assert row_field(browser, job_id, ".state") == "running"
        eta = row_field(browser, job_id, ".eta") or ""
        assert re.fullmatch(r"\d+s|\d+m \d+s", eta), f"an ETA from the measured rate, not {eta!r}"

        click_in_row(browser, job_id, "cancel")
        wait_for(lambda: service.db.ProcessingJob.find_one({"_id": job_id}).get("cancel_requested"),
                 what="the cancel request on the job")
        worker.release(3)
        wait_js(browser, f"const row = {ROW}; return row && row.dataset.state === 'cancelled'", job_id, timeout=60,
                what="the row to show cancelled")
    finally:
        worker.stop()
    job = service.db.ProcessingJob.find_one({"_id": job_id})
    assert job["state"] == "cancelled" and job["progress"] < 100
    upload = service.db.AnnotationContentUpload.find_one({"_id": upload_id})
    assert upload["status"] == 2 and upload["errorMessage"]["error_code"] == 499
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0
    assert "Cancel:" in js(browser, "return document.getElementById('action-message').textContent")


def test_browser_retry_reruns_a_failed_job(make_service, browser):
    service = make_service()
    log_in(browser, service)
    broken = service.content / "uploads" / "broken.mp4"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("this is not a video\n" * 50)
    upload_id = queue_upload(service, "broken.mp4", frame_rate=5)
    job_id = f"content:{upload_id}"
    wait_js(browser, f"const row = {ROW}; return row && row.dataset.state === 'failed'", job_id, what="failed")
    assert "unreadable_media" in row_field(browser, job_id, ".error")
    assert service.db.AnnotationContentUpload.find_one({"_id": upload_id})["status"] == 2

    make_video(broken, 30, 25, size=(160, 120))  # the operator fixes the file, then retries
    click_in_row(browser, job_id, "retry")
    wait_js(browser, f"const row = {ROW}; return row && row.dataset.state === 'done'", job_id, what="done")
    assert row_field(browser, job_id, ".pct") == "100.0%" and row_field(browser, job_id, ".error") == ""
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 1 and upload["taskCount"] == 1
    job = service.db.ProcessingJob.find_one({"_id": job_id})
    assert job["attempts"] == 1 and "unreadable_media" in job["history"][-1]["error"]
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 1


def test_browser_try_it_uploads_a_video_and_plays_its_task_video(make_service, browser, tmp_path):
    from PIL import Image, ImageStat
    from selenium.webdriver.common.by import By

    service = make_service()
    log_in(browser, service)
    clip = make_video(tmp_path / "street.mp4", 50, 25, size=(320, 240))
    browser.find_element(By.ID, "try-video").send_keys(str(clip))
    rate = browser.find_element(By.ID, "try-rate")
    rate.clear()
    rate.send_keys("10")
    browser.find_element(By.ID, "try-submit").click()
    wait_js(browser, "return /: done/.test(document.getElementById('try-status').textContent)", timeout=30,
            what="the try-it job to be done")
    assert "1 task" in js(browser, "return document.getElementById('try-status').textContent")
    upload = service.db.AnnotationContentUpload.find_one({})
    assert upload["status"] == 1 and upload["frame_rate"] == 10 and upload["sourceFilePath"].endswith(".mp4")
    task = service.db.AnnotationTask.find_one({"uploadId": upload["_id"]})
    assert task["frameCount"] == 20

    # Its task video plays in the page: decoded frames (readyState >= 2, a size) and time advancing.
    video = "document.querySelector('#try-tasks video')"
    state = wait_js(browser, f"const v = {video}; return v && v.readyState >= 2 && v.videoWidth > 0 && "
                             "[v.readyState, v.videoWidth, v.videoHeight, v.currentTime, v.src]", timeout=20,
                    what="the task video to load")
    assert state[1:3] == [320, 240] and state[4].startswith(f"{service.url}/jobs/media/contents/"), state
    start = state[3]
    wait_js(browser, f"return {video}.currentTime > arguments[0]", start, timeout=10, what="the video to play")
    assert js(browser, f"return {video}.error") is None

    # The screenshot of the page with the finished job and its task video, kept in docs/ (compared by
    # size and content, not pixels; UPDATE_SCREENSHOT=1 or a missing file writes it anew).
    wait_js(browser, f"const r = {ROW}; return r && r.dataset.state === 'done'", f"content:{upload['_id']}",
            what="the finished job in the table")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})
    shot = tmp_path / "jobs-page.png"
    browser.save_screenshot(str(shot))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    image = Image.open(shot).convert("RGB")
    assert image.size == VIEWPORT
    stats = ImageStat.Stat(image)
    assert max(stats.stddev) > 20 and len(image.getcolors(1 << 20) or []) > 50  # not blank
    if os.environ.get("UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        shutil.copy(shot, SCREENSHOT)
    assert Image.open(SCREENSHOT).size == image.size

    # The upload's own page lists the task with its video (served with range requests), its boxes drawn
    # over it: one colour per track where boxes carry a trackId, else the label's colour.
    def boxes(frame_id: int) -> list[dict]:
        def box(index, label, color, x, track):
            bounds = {"id": index, "type": "rectangle", "label": label, "color": color, "x": x, "y": 40, "w": 60,
                      "h": 100, "autoLable_confidance": "0.9000"}
            return {"id": index, "boundaries": bounds, **({"trackId": track} if track is not None else {})}
        return [box(0, "person", "#e6194b", 10, 1), box(1, "person", "#e6194b", 120, 2),
                box(2, "car", "#3cb44b", 230, None)]
    for frame in service.db.AnnotationFrame.find({"taskId": task["_id"]}):
        service.db.AnnotationFrame.update_one({"_id": frame["_id"]}, {"$set": {"boxes": boxes(frame["frameId"])}})
    browser.get(f"{service.url}/jobs/uploads/{upload['_id']}")
    wait_js(browser, "const v = document.querySelector('#tasks video'); return v && v.readyState >= 1",
            what="the upload page's video")
    assert task["taskName"] in browser.find_element(By.ID, "tasks").text
    colors = wait_js(browser, "const f = document.querySelector('figure.task');"
                              "return Number(f.dataset.shownBoxes) === 3 && JSON.parse(f.dataset.shownColors)",
                     what="the boxes drawn")
    assert colors[0] != colors[1] and colors[2] == "#3cb44b", colors  # two tracks of one label; a label's colour
    assert colors[0] != "#e6194b" or colors[1] != "#e6194b"
