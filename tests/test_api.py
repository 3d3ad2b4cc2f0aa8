"""POST /api/processContent: the contract's validation table, auth, and the queued job (issue 2)."""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import requests
from bson import ObjectId

from tests.conftest import NODE_KEY
from tests.helpers import fields_for, new_upload, post_node
from tests.media import make_video

BAD_ID = "not-an-object-id"
OID_TEXT = ("invalid ObjectId, it must be a 12-byte input or a 24-character hex string "
            "(EX: 6127d7b6cb8d74adc903eeb9)")


@pytest.fixture
def idle_service(make_service):
    """The API alone: no workers, so accepted jobs stay queued where the test can see them."""
    return make_service(APP_RUN_WORKERS="false")


@pytest.fixture
def upload(idle_service):
    make_video(idle_service.content / "uploads" / "clip.mp4", 10, 25)
    upload_id, project_id = new_upload(idle_service.db, "./uploads/clip.mp4")
    return upload_id, project_id


def post(service, fields, kind="node"):
    url = f"{service.url}/api/processContent"
    if kind == "node":
        return post_node(url, fields)
    if kind == "urlencoded":
        return requests.post(url, data=fields, timeout=30)
    return requests.post(url, json=fields, timeout=30)


def upload_doc(service, upload_id):
    return service.db.AnnotationContentUpload.find_one({"_id": upload_id})


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
    services = Services(settings, mongo_manager.connect(settings.mongo_uri, "x", timeout_ms=300), None)
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
