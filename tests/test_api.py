"""POST /api/processContent: the contract's validation table, auth, and the queued job (issue 2)."""
from __future__ import annotations

import json
import logging
import math
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
import requests
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from tests.conftest import NODE_KEY
from tests.helpers import fields_for, new_upload, post, post_node, upload_doc, wait_for_upload
from tests.media import ffprobe_stream, make_video

BAD_ID = "not-an-object-id"
OID_TEXT = ("invalid ObjectId, it must be a 12-byte input or a 24-character hex string "
            "(EX: 6127d7b6cb8d74adc903eeb9)")


@pytest.fixture
def upload(idle_service):
    make_video(idle_service.content / "uploads" / "clip.mp4", 10, 25)
    upload_id, project_id = new_upload(idle_service.db, "./uploads/clip.mp4")
    return upload_id, project_id


# (change to the valid request, status, exact body) in the contract's order.
VALIDATION_ROWS = [
    ({"upload_id": None}, 400, {"message": "missing upload_id param"}),
    ({"upload_id": BAD_ID}, 400, {BAD_ID: OID_TEXT}),
    ({"auth_key": ""}, 400, {"message": "please provide the auth key"}),
    ({"auth_key": "wrong"}, 401, {"Authentication Error": "Invalid auth key. please provide the valid auth key"}),
    ({"auth_key": None}, 401, {"Authentication Error": "Invalid auth key. please provide the valid auth key"}),
    ({"frame_rate": "five"}, 400, {"five": "frame_rate need to be an integer"}),
    ({"frame_rate": "0"}, 400, {"0": "frame_rate need to be an integer"}),
    ({"frame_rate": "2.5"}, 400, {"2.5": "frame_rate need to be an integer"}),
    ({"frame_rate": None}, 400, {"message": "missing frame_rate param"}),
    ({"project_id": BAD_ID}, 400, {BAD_ID: OID_TEXT}),
    ({"project_id": None}, 400, {"message": "missing project_id param"}),
    ({"force_write": "x"}, 400, {"x": "force_write need to be an integer.",
                                 "INFO": {"no force write": 0, "forcefully write": 1}}),
    ({"force_write": None}, 400, {"message": "missing force_write param"}),
    ({"request_type": "x"}, 400, {"x": "request_type need to be an integer.",
                                  "INFO": {"only tasks without annotations": 0, "tasks plus annotations": 1,
                                           "auto annotations only": 2}}),
    ({"request_type": None}, 400, {"message": "missing request_type param"}),
    ({"auto_anno_version": None}, 400, {"message": "missing auto_anno_version param"}),
    ({"content_path": None}, 400, {"message": "missing content_path param"}),
]


@pytest.mark.parametrize("kind", ["node", "urlencoded", "json"])
@pytest.mark.parametrize("change,status,body", VALIDATION_ROWS)
def test_validation_table(idle_service, upload, change, status, body, kind):
    upload_id, project_id = upload
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4", **change), kind)
    assert response.status_code == status
    assert response.json() == body
    doc = upload_doc(idle_service, upload_id)
    if "upload_id" in change:
        assert doc["status"] == 0 and "errorMessage" not in doc  # no valid id: nothing to record on
    else:
        assert doc["status"] == 2 and doc["errorMessage"]["error_code"] == status
        assert doc["errorMessage"]["message"]
        assert doc["nodeOwnedField"] == "keep me"  # updated in place
    assert idle_service.db.ProcessingJob.count_documents({}) == 0


def test_first_failure_wins(idle_service, upload):
    upload_id, project_id = upload
    fields = fields_for(upload_id, project_id, "./uploads/clip.mp4", frame_rate="x", project_id=BAD_ID,
                        force_write="x")
    assert post(idle_service, fields).json() == {"x": "frame_rate need to be an integer"}


@pytest.mark.parametrize("kind", ["node", "urlencoded", "json"])
@pytest.mark.parametrize("field", ["upload_id", "project_id"])
def test_an_object_id_with_a_trailing_newline_is_400(idle_service, kind, field):
    make_video(idle_service.content / "n.mp4", 5, 25)
    upload_id, project_id = new_upload(idle_service.db, "./n.mp4")
    fields = fields_for(upload_id, project_id, "./n.mp4")
    fields[field] += "\n"
    url = f"{idle_service.url}/api/processContent"
    answer = {"node": lambda: post_node(url, fields), "urlencoded": lambda: requests.post(url, data=fields),
              "json": lambda: requests.post(url, json=fields)}[kind]()
    assert answer.status_code == 400 and "invalid ObjectId" in answer.text


@pytest.mark.parametrize("request_type,version,fragment", [
    ("x", "0", "request_type need to be an integer."),
    ("0", "x", "auto_anno_version need to be an integer."),
    ("0", "2", "must be 0 when request_type is 0"),
    ("1", "0", "must be greater than 0"),
    ("2", "0", "must be greater than 0"),
])
def test_auto_annotation_version_rules(idle_service, upload, request_type, version, fragment):
    upload_id, project_id = upload
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4",
                                             request_type=request_type, auto_anno_version=version))
    assert response.status_code == 400
    assert fragment in json.dumps(response.json()) and "INFO" in response.json()


def test_version_must_exceed_the_applied_one(idle_service, upload):
    upload_id, project_id = upload
    idle_service.db.AnnotationTask.insert_one({"uploadId": upload_id, "AutoAnnotationVersion": 3})
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4",
                                             request_type=2, auto_anno_version=3))
    assert response.status_code == 400 and "already applied" in response.json()["message"]


@pytest.mark.parametrize("path,status", [
    ("../../etc/passwd.mp4", 400), ("/etc/hostname.mp4", 400), ("./uploads/missing.mp4", 404),
    ("./uploads/clip.txt", 415),
])
def test_content_path_rules(idle_service, upload, path, status):
    upload_id, project_id = upload
    response = post(idle_service, fields_for(upload_id, project_id, path))
    assert response.status_code == status, response.text
    assert upload_doc(idle_service, upload_id)["errorMessage"]["error_code"] == status


def test_symlink_out_of_the_content_root_is_refused(idle_service, upload, tmp_path):
    upload_id, project_id = upload
    outside = make_video(tmp_path / "outside" / "secret.mp4", 3, 25)
    (idle_service.content / "uploads" / "link.mp4").symlink_to(outside)
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/link.mp4"))
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["./" + "n" * 300 + ".mp4", "./" + "/".join(["d" * 200] * 25) + "/x.mp4"])
def test_names_too_long_for_the_filesystem_are_400_and_recorded(idle_service, path):
    upload_id, project_id = new_upload(idle_service.db, path)
    answer = post(idle_service, fields_for(upload_id, project_id, path))
    assert answer.status_code == 400, answer.text
    assert upload_doc(idle_service, upload_id)["errorMessage"]["error_code"] == 400


def test_node_request_is_accepted_and_queued(idle_service, upload):
    upload_id, project_id = upload
    started = time.monotonic()
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4"))
    assert time.monotonic() - started < 2
    assert response.status_code == 202
    assert response.json()["upload_id"] == str(upload_id) and response.json()["state"] == "queued"
    job = idle_service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert job["state"] == "queued" and job["params"]["upload_id"] == upload_id
    assert job["params"]["frame_rate"] == 5 and job["params"]["video_name"] == "clip"
    # The same upload again while queued: its state, nothing new.
    again = post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4"))
    assert again.status_code == 200 and again.json()["state"] == "queued"
    assert idle_service.db.ProcessingJob.count_documents({}) == 1
    # A bad repeat must not mark the queued run as failed.
    post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4", frame_rate="x"))
    assert upload_doc(idle_service, upload_id)["status"] == 0
    url = f"{idle_service.url}/api/processContent/status"
    assert requests.get(url, params={"upload_id": str(upload_id)}).status_code == 401  # the key is required
    status = requests.get(url, params={"upload_id": str(upload_id)}, headers={"X-API-Key": NODE_KEY})
    assert status.json()["state"] == "queued"


def test_concurrent_duplicates_queue_one_job(idle_service, upload):
    upload_id, project_id = upload
    fields = fields_for(upload_id, project_id, "./uploads/clip.mp4")
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(post(idle_service, fields).status_code)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes).count(202) == 1 and codes.count(200) == 7
    assert idle_service.db.ProcessingJob.count_documents({}) == 1


def test_five_requests_for_one_video_start_one_run(make_service):
    service = make_service(APP_RUN_WORKERS="false")
    make_video(service.content / "same.mp4", 30, 25)
    project_id = ObjectId()
    service.db.AnnotationProject.insert_one({"_id": project_id, "contentUploads": []})
    uploads = [ObjectId() for _ in range(5)]
    for upload_id in uploads:
        service.db.AnnotationContentUpload.insert_one({"_id": upload_id, "projectId": project_id, "status": 0})
    answers = [None] * 5
    barrier = threading.Barrier(5)

    def send(i):
        barrier.wait()
        answers[i] = post(service, fields_for(uploads[i], project_id, "./same.mp4"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409, 409]
    refused = [u for u, a in zip(uploads, answers) if a.status_code == 409]
    assert all("being processed for another upload" in upload_doc(service, u)["errorMessage"]["message"]
               for u in refused)
    winner = next(u for u, a in zip(uploads, answers) if a.status_code == 202)
    service.services.start_workers()
    assert wait_for_upload(service.db, winner)["status"] == 1
    tasks = list(service.db.AnnotationTask.find({"projectId": project_id}))
    assert len(tasks) == 1 and tasks[0]["uploadId"] == winner
    assert len(list(Path(service.settings.storage.url).rglob("*.mp4"))) == 1
    # The database itself refuses a second task doc naming the same object.
    with pytest.raises(DuplicateKeyError):
        service.db.AnnotationTask.insert_one({"projectId": project_id, "S3_url": tasks[0]["S3_url"]})
    # Once the run has ended, the next request for the video meets its tasks: 409, recorded as 200.
    service.db.AnnotationContentUpload.update_one({"_id": refused[0]}, {"$set": {"status": 0}})  # as Node does
    assert post(service, fields_for(refused[0], project_id, "./same.mp4")).status_code == 409
    assert upload_doc(service, refused[0])["errorMessage"]["error_code"] == 200


def test_second_configured_key_works_and_auto_annotation_is_queued(idle_service, upload):
    upload_id, project_id = upload
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4", auth_key="second-key",
                                             request_type=1, auto_anno_version=1))
    assert response.status_code == 202
    job = idle_service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    assert job["kind"] == "content" and job["params"]["request_type"] == 1


def test_unknown_upload_is_404(idle_service):
    response = post(idle_service, fields_for(ObjectId(), ObjectId(), "./uploads/clip.mp4"))
    assert response.status_code == 404


def test_the_upload_must_belong_to_the_named_project_which_must_exist(idle_service):
    make_video(idle_service.content / "p.mp4", 5, 25)
    upload_id, project_a = new_upload(idle_service.db, "./p.mp4")
    project_b = ObjectId()
    idle_service.db.AnnotationProject.insert_one({"_id": project_b, "contentUploads": []})
    answer = post(idle_service, fields_for(upload_id, project_b, "./p.mp4"))
    assert answer.status_code == 400 and str(project_a) in answer.json()["message"]
    assert upload_doc(idle_service, upload_id)["errorMessage"]["error_code"] == 400
    orphan = ObjectId()
    idle_service.db.AnnotationContentUpload.insert_one({"_id": orphan, "projectId": (ghost := ObjectId()), "status": 0})
    answer = post(idle_service, fields_for(orphan, ghost, "./p.mp4"))
    assert answer.status_code == 404 and "project" in answer.json()["message"]
    assert upload_doc(idle_service, orphan)["errorMessage"]["error_code"] == 404
    assert idle_service.db.ProcessingJob.count_documents({}) == 0
    assert idle_service.db.AnnotationProject.find_one({"_id": project_b})["contentUploads"] == []


def test_keys_never_reach_the_logs(idle_service, upload, caplog):
    upload_id, project_id = upload
    caplog.set_level(logging.DEBUG)
    post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4", auth_key=NODE_KEY + "x"))
    post(idle_service, fields_for(upload_id, project_id, "./uploads/clip.mp4"))
    logging.getLogger("probe").info("leak attempt %s", NODE_KEY)
    assert caplog.records
    text = "\n".join(handler_format(r) for r in caplog.records)
    assert NODE_KEY not in text
    assert f"upload={upload_id}" in text


def handler_format(record):
    """The line as the service's handlers write it: job label added, secrets masked."""
    handler = logging.getLogger().handlers[0]
    handler.filter(record)
    return handler.format(record)


class RecordingKey(str):
    """A configured key that records being compared (and how)."""
    compared: list = []

    def encode(self, *args, **kwargs):
        RecordingKey.compared.append(str(self))
        return super().encode(*args, **kwargs)


def test_every_configured_key_is_compared_in_constant_time_with_no_early_exit(monkeypatch):
    """Whichever key matches, first, last or none, every key is compared, and each comparison is
    hmac.compare_digest's (the time of a comparison does not tell how much of a key matched)."""
    import hmac

    from media_service.web import auth
    digests = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: digests.append((a, b)) or real(a, b))
    keys = tuple(RecordingKey(k) for k in ("first-key", "second-key", "third-key"))
    for given, expected in (("first-key", True), ("third-key", True), ("nothing", False), ("", False)):
        RecordingKey.compared.clear()
        digests.clear()
        assert auth.key_matches(given, keys) is expected
        assert RecordingKey.compared == list(keys)
        assert [b for _, b in digests] == [k.encode() for k in keys]


def test_a_wrong_key_never_changes_a_finished_upload(service):
    make_video(service.content / "done.mp4", 10, 25)
    upload_id, project_id = new_upload(service.db, "./done.mp4")
    assert post(service, fields_for(upload_id, project_id, "./done.mp4")).status_code == 202
    finished = wait_for_upload(service.db, upload_id)
    assert finished["status"] == 1
    for change in ({"auth_key": "wrong-key"}, {"frame_rate": "x"}, {"content_path": "../../etc/passwd.mp4"}):
        post(service, fields_for(upload_id, project_id, "./done.mp4", **change))
        assert upload_doc(service, upload_id) == finished


def test_a_key_sent_in_the_wrong_field_is_masked_in_the_answer_and_the_upload_doc(idle_service):
    make_video(idle_service.content / "m.mp4", 5, 25)
    upload_id, project_id = new_upload(idle_service.db, "./m.mp4")
    for field in ("frame_rate", "force_write", "request_type", "auto_anno_version", "project_id"):
        idle_service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {"status": 0}})
        answer = post(idle_service, fields_for(upload_id, project_id, "./m.mp4", **{field: NODE_KEY}))
        assert answer.status_code == 400
        assert NODE_KEY not in answer.text and "***" in answer.text, field
        doc = upload_doc(idle_service, upload_id)
        assert doc["status"] == 2 and NODE_KEY not in json.dumps(doc["errorMessage"]), field


def test_stored_errors_name_no_server_paths_and_status_needs_the_key(service):
    (service.content / "broken.mp4").write_bytes(b"not a video at all" * 50)
    upload_id, project_id = new_upload(service.db, "./broken.mp4")
    assert post(service, fields_for(upload_id, project_id, "./broken.mp4")).status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    job = service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
    status = requests.get(f"{service.url}/api/processContent/status", params={"upload_id": str(upload_id)},
                          headers={"X-API-Key": NODE_KEY}).json()
    for text in (upload["errorMessage"]["message"], job["last_error"], status["error"]):
        assert "unreadable_media" in text and "/tmp" not in text and "/proc" not in text, text
    assert requests.get(f"{service.url}/api/processContent/status",
                        params={"upload_id": str(upload_id)}).status_code == 401


def test_other_routes(idle_service):
    base = idle_service.url
    assert requests.get(f"{base}/api/health").status_code == 200
    ready = requests.get(f"{base}/api/ready")
    assert ready.status_code == 200 and ready.json()["mongodb"] == "ok"
    form = requests.get(f"{base}/api/processContent")
    assert form.status_code == 200 and "<form" in form.text and 'name="upload_id"' in form.text
    missing = requests.get(f"{base}/api/nowhere")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    wrong = requests.delete(f"{base}/api/processContent")
    assert wrong.status_code == 405 and wrong.headers["Content-Type"] == "application/json"
    big = requests.post(f"{base}/api/processContent", data={"x": "y" * 2_000_000})
    assert big.status_code == 413 and "message" in big.json()
    edit = requests.post(f"{base}/api/editDataSet", data={"project_id_list": "[]"})
    assert edit.status_code == 501 and "not supported" in edit.json()["message"]
    no_key = requests.post(f"{base}/api/createDataSet", data={"data_version_id": str(ObjectId())})
    assert no_key.status_code == 404  # loopback may call it without a key, as Node does; no such version
    bad = requests.post(f"{base}/api/createDataSet", data={"data_version_id": "zz", "auth_key": NODE_KEY})
    assert bad.status_code == 400


def test_readiness_fails_without_mongodb(tmp_path):
    from werkzeug.serving import make_server

    from app import create_app
    from media_service.config import load_settings
    from tests.conftest import service_env
    settings = load_settings(service_env(tmp_path, "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300",
                                         APP_RUN_WORKERS="false"))
    import mongo_manager
    from media_service.services import Services
    services = Services(settings, mongo_manager.connect(settings.mongodb.uri, "x", timeout_ms=300), None)
    app = create_app(settings, services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        response = requests.get(f"http://127.0.0.1:{server.server_port}/api/ready")
        assert response.status_code == 503
        assert requests.get(f"http://127.0.0.1:{server.server_port}/api/health").status_code == 200
    finally:
        server.shutdown()


def test_routes_answer_with_a_trailing_slash_too(service):
    """A proxy or an old client may add a slash: the same answer, never a redirect (a POST's body
    would be lost on the way)."""
    for path in ("/api/health", "/api/health/", "/health/"):
        assert requests.get(f"{service.url}{path}", allow_redirects=False, timeout=10).status_code == 200, path
    for path in ("/api/processContent", "/api/processContent/"):
        answer = post_node(f"{service.url}{path}", {"auth_key": NODE_KEY})
        assert answer.status_code == 400 and answer.json() == {"message": "missing upload_id param"}, path


def test_cors_headers_only_for_the_configured_origins(make_service):
    platform = "https://annotate.example.com"
    service = make_service(APP_CORS_ORIGINS=platform)
    allowed = requests.get(f"{service.url}/api/health", headers={"Origin": platform}, timeout=10)
    assert allowed.headers["Access-Control-Allow-Origin"] == platform and "Origin" in allowed.headers["Vary"]
    preflight = requests.options(f"{service.url}/api/processContent", timeout=10, headers={
        "Origin": platform, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == platform
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    other = requests.get(f"{service.url}/api/health", headers={"Origin": "https://elsewhere.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers
    default = make_service()  # none by default (the old service allowed any origin)
    answer = requests.get(f"{default.url}/api/health", headers={"Origin": platform}, timeout=10)
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_the_old_privacy_servers_status_routes_answer_its_load_line(service):
    import re

    for path in ("/", "/status"):
        answer = requests.get(f"{service.url}{path}", timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
        assert re.fullmatch(r"System load averages \(1m, 5m, 15m\): \d+\.\d\d%, \d+\.\d\d%, \d+\.\d\d%",
                            answer.text), answer.text


# ---- frame_rate against the source's own rate (issue 21 item 7) ----------------------------------
# A task video plays at frame_rate, one sampled frame each: a rate above the source's own would
# declare frames that do not exist. The limit is the source's average rate as FFmpeg reports it
# (ffprobe's avg_frame_rate), rounded up; image folders have [Content] max_image_frame_rate.

def source_limit(path) -> int:
    """The limit, read independently of the service: ffprobe's avg_frame_rate, rounded up."""
    return math.ceil(Fraction(ffprobe_stream(path)["avg_frame_rate"]))


def assert_refused(service, upload_id, response, limit):
    assert response.status_code == 400, response.text
    assert response.json()["INFO"]["highest frame_rate"] == limit
    assert "above" in response.json()["message"]
    doc = upload_doc(service, upload_id)
    assert doc["status"] == 2 and doc["errorMessage"]["error_code"] == 400
    assert doc["errorMessage"]["message"] == response.json()["message"]
    assert service.db.ProcessingJob.count_documents({}) == 0  # nothing queued
    assert service.db.AnnotationTask.count_documents({}) == 0


def test_a_video_at_its_own_frame_rate_is_cut_into_tasks(service):
    clip = make_video(service.content / "uploads" / "own.mp4", 10, 25)
    assert source_limit(clip) == 25
    upload_id, project_id = new_upload(service.db, "./uploads/own.mp4", frame_rate=25)
    response = post(service, fields_for(upload_id, project_id, "./uploads/own.mp4", frame_rate=25))
    assert response.status_code == 202, response.text
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}))
    assert tasks and all(task["frameRate"] == 25 for task in tasks)
    assert sum(task["frameCount"] for task in tasks) == 10  # every frame, once


@pytest.mark.parametrize("fps,rate", [(25, 26), (25, 999999999), (Fraction(30000, 1001), 31), (10, 11)])
def test_a_rate_above_the_videos_own_is_refused_before_any_work(idle_service, fps, rate):
    clip = make_video(idle_service.content / "uploads" / "fast.mp4", 10, fps)
    limit = source_limit(clip)
    assert rate > limit
    upload_id, project_id = new_upload(idle_service.db, "./uploads/fast.mp4")
    for kind in ("node", "json"):
        response = post(idle_service, fields_for(upload_id, project_id, "./uploads/fast.mp4", frame_rate=rate), kind)
        assert_refused(idle_service, upload_id, response, limit)


@pytest.mark.parametrize("fps", [25, Fraction(30000, 1001), Fraction(24000, 1001)])
def test_the_rate_rounded_up_is_accepted(idle_service, fps):
    """29.97 fps takes 30 (every frame), as Node's users ask for a whole number."""
    clip = make_video(idle_service.content / "uploads" / "ntsc.mp4", 10, fps)
    upload_id, project_id = new_upload(idle_service.db, "./uploads/ntsc.mp4")
    rate = source_limit(clip)
    assert rate == math.ceil(fps)
    response = post(idle_service, fields_for(upload_id, project_id, "./uploads/ntsc.mp4", frame_rate=rate))
    assert response.status_code == 202, response.text
    assert idle_service.db.ProcessingJob.find_one()["params"]["frame_rate"] == rate


def test_a_variable_rate_video_is_judged_by_its_average(idle_service):
    """By the average of its frames as decoded (13 intervals over 2.9 s: 4.5 fps), as the sampler
    measures it; the header's avg_frame_rate (14 frames over its stated 2.49 s: 5.6 fps) would take
    6, every frame kept and played a third too fast."""
    times = [0, 0.03, 0.05, 0.3, 0.31, 0.7, 0.71, 0.72, 1.5, 1.6, 1.61, 2.4, 2.45, 2.9]
    clip = make_video(idle_service.content / "uploads" / "vfr.mp4", len(times), 25, times=times)
    limit = math.ceil(decoded_rate(clip))
    assert Fraction(ffprobe_stream(clip)["r_frame_rate"]) > limit  # the nominal rate would let far more through
    assert source_limit(clip) > limit  # and so would the header's average
    upload_id, project_id = new_upload(idle_service.db, "./uploads/vfr.mp4")
    above = post(idle_service, fields_for(upload_id, project_id, "./uploads/vfr.mp4", frame_rate=limit + 1))
    assert_refused(idle_service, upload_id, above, limit)
    idle_service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {"status": 0}})
    at = post(idle_service, fields_for(upload_id, project_id, "./uploads/vfr.mp4", frame_rate=limit))
    assert at.status_code == 202, at.text


def lying_avi(path: Path) -> Path:
    """An AVI whose header says 15 fps while its frames come 2.3 a second (a camera's variable rate
    written into AVI): the muxer fills the gaps with null chunks, so the header counts 125 frames
    over 8.3 s where 20 hold a picture. Like OpenCV's tree.avi (15 fps declared, 68 frames in 29.6 s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=23/10",
                    "-frames:v", "20", "-fps_mode", "passthrough", "-c:v", "cinepak", "-r", "15", str(path)],
                   check=True, capture_output=True)
    return path


def decoded_rate(path: Path) -> float:
    """The average rate of what FFmpeg decodes: frames less one over the span of their timestamps."""
    frames = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                        "frame=pts_time", "-of", "json", str(path)],
                                       capture_output=True, text=True, check=True).stdout)["frames"]
    times = sorted(float(frame["pts_time"]) for frame in frames)
    return (len(times) - 1) / (times[-1] - times[0])


def test_a_header_that_overstates_the_rate_is_judged_by_the_frames_measured_rate(idle_service):
    """Issue 33: such an AVI was accepted at 5 fps and every frame kept: its task video played 2.2x
    too fast. Where the header and the stream disagree, the measured rate decides, and the answer
    says which rate was used."""
    clip = lying_avi(idle_service.content / "uploads" / "lying.avi")
    assert Fraction(ffprobe_stream(clip)["avg_frame_rate"]) == 15  # what the header says
    measured = decoded_rate(clip)
    assert 2.2 < measured < 2.4
    limit = math.ceil(measured)
    upload_id, project_id = new_upload(idle_service.db, "./uploads/lying.avi")
    above = post(idle_service, fields_for(upload_id, project_id, "./uploads/lying.avi", frame_rate=5))
    assert_refused(idle_service, upload_id, above, limit)
    message = above.json()["message"]
    assert f"({measured:.3g} fps, measured from its frames' timestamps; its header says 15 fps)" in message, message
    assert above.json()["INFO"]["rate used"] == "measured"
    idle_service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {"status": 0}})
    at = post(idle_service, fields_for(upload_id, project_id, "./uploads/lying.avi", frame_rate=limit))
    assert at.status_code == 202, at.text
    # A header that tells the truth is named as the source of the rate.
    clip = make_video(idle_service.content / "uploads" / "true.mp4", 10, 25)
    upload_id, project_id = new_upload(idle_service.db, "./uploads/true.mp4")
    above = post(idle_service, fields_for(upload_id, project_id, "./uploads/true.mp4", frame_rate=26))
    assert above.json()["INFO"]["rate used"] == "header"
    assert "(25 fps, from its header)" in above.json()["message"]


def test_an_unreadable_video_keeps_its_own_error(service):
    """A file that cannot be probed is not judged by its rate: the worker's probe reports it."""
    (service.content / "uploads").mkdir(parents=True, exist_ok=True)
    (service.content / "uploads" / "junk.mp4").write_bytes(b"not a video" * 100)
    upload_id, project_id = new_upload(service.db, "./uploads/junk.mp4")
    response = post(service, fields_for(upload_id, project_id, "./uploads/junk.mp4", frame_rate=999999999))
    assert response.status_code == 202, response.text
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 2 and "cannot open junk.mp4 as a video" in upload["errorMessage"]["message"]


def image_folder(service, name: str, count: int = 3):
    import cv2
    import numpy as np
    folder = service.content / name
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        cv2.imwrite(str(folder / f"{number}.png"), np.full((40, 60, 3), 40 * number, np.uint8))
    return f"./{name}"


@pytest.mark.parametrize("limit", [None, 10])
def test_image_folders_take_rates_up_to_the_configured_limit(make_service, limit):
    service = make_service(**({"CONTENT_MAX_IMAGE_FRAME_RATE": str(limit)} if limit else {}))
    limit = limit or 60  # the default
    assert service.settings.content.max_image_frame_rate == limit
    refused_path = image_folder(service, "too-fast")
    for rate in (limit + 1, 999999999):
        upload_id, project_id = new_upload(service.db, refused_path, content_type=2)
        response = post(service, fields_for(upload_id, project_id, refused_path, content_type=2, frame_rate=rate))
        assert_refused(service, upload_id, response, limit)
    path = image_folder(service, "at-the-limit")
    upload_id, project_id = new_upload(service.db, path, content_type=2)
    response = post(service, fields_for(upload_id, project_id, path, content_type=2, frame_rate=limit))
    assert response.status_code == 202, response.text
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    tasks = list(service.db.AnnotationTask.find({"uploadId": upload_id}))
    assert [task["frameRate"] for task in tasks] == [limit] and tasks[0]["frameCount"] == 3
