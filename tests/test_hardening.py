"""Hostile input, faults and review findings (issue 11): one test per class of defect, numbered as
in the issue. Each failed before its fix."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from media_service.embedded_mongo import EmbeddedMongo
from tests.conftest import NODE_KEY, ROOT
from tests.helpers import (
    clean_service_env,
    fields_for,
    free_port,
    new_upload,
    post_node,
    wait_for_upload,
    wait_until_ready,
)
from tests.media import make_video


def post(service, fields):
    return post_node(f"{service.url}/api/processContent", fields)


def upload_doc(service, upload_id):
    return service.db.AnnotationContentUpload.find_one({"_id": upload_id})


def wait_for(condition, timeout: float = 60, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


# -- 1, 2: jobs survive their database ----------------------------------------------------------

@pytest.fixture
def own_mongo(tmp_path):
    """A MongoDB server of this test's own, which the test stops and starts again."""
    server = EmbeddedMongo(tmp_path / "own-db", port=free_port())
    server.start()
    yield server
    server.stop()


def test_1_2_an_outage_ends_every_job_without_a_restart_and_answers_503_meanwhile(make_service, own_mongo,
                                                                                  tmp_path):
    service = make_service(MONGO_URI=own_mongo.uri, MONGODB_TIMEOUT_SECONDS="1", JOBS_LEASE_SECONDS="3",
                           JOBS_HEARTBEAT_SECONDS="0.5", CONTENT_FRAMES_PER_TASK="3")
    uploads = []
    for name in ("a.mp4", "b.mp4"):
        make_video(service.content / name, 500, 25, size=(480, 360))
        upload_id, project_id = new_upload(service.db, f"./{name}", frames_per_task=3)
        assert post(service, fields_for(upload_id, project_id, f"./{name}", frame_rate=25)).status_code == 202
        uploads.append(upload_id)
    wait_for(lambda: service.db.ProcessingJob.count_documents({"state": "running",
                                                               "checkpoint.next_task": {"$gte": 2}}))

    own_mongo.stop()  # the database goes away while both jobs run
    started = time.monotonic()
    ready = requests.get(f"{service.url}/api/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["mongodb"] == "unreachable"
    refused = post(service, fields_for(ObjectId(), ObjectId(), "./a.mp4"))
    assert refused.status_code == 503 and refused.json()["status"] == 503
    assert time.monotonic() - started < 6  # within a couple of seconds each, not pymongo's 30
    time.sleep(6)  # longer than a lease: workers' closing writes fail meanwhile
    own_mongo.start()

    assert requests.get(f"{service.url}/api/ready", timeout=10).json()["workers"] == "2 of 2 alive"
    for upload_id in uploads:
        assert wait_for_upload(service.db, upload_id, timeout=120)["status"] == 1
    # A new upload after the outage is taken too: the pool kept all its threads.
    make_video(service.content / "c.mp4", 20, 25)
    upload_id, project_id = new_upload(service.db, "./c.mp4", frames_per_task=3)
    assert post(service, fields_for(upload_id, project_id, "./c.mp4")).status_code == 202
    assert wait_for_upload(service.db, upload_id, timeout=60)["status"] == 1
    assert requests.get(f"{service.url}/api/ready", timeout=10).status_code == 200


class DyingHandler:
    """A job kind whose run ends its worker thread the hard way (what an unhandled BaseException does)."""
    kind = "dying"

    def label(self, job):
        return "dying"

    def run(self, ctx):
        raise SystemExit("worker thread ends")

    def permanent_error(self, exc):
        return None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_2_ready_is_503_when_a_worker_thread_is_gone(make_service):
    service = make_service()
    pool = service.services.pool
    pool.handlers["dying"] = DyingHandler()
    service.services.mongo.enqueue_job("dying:1", "dying", "1", {}, 1)
    pool.notify()
    wait_for(lambda: pool.alive() < pool.size)
    ready = requests.get(f"{service.url}/api/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["workers"] == f"{pool.size - 1} of {pool.size} alive"


def test_3_and_6_gunicorn_takes_mongo_uri_from_the_secrets_file_and_logs_no_query_string(mongo_uri, tmp_path):
    db_name = "t_" + ObjectId().__str__()
    secrets = tmp_path / "secrets.ini"
    secrets.write_text(f"[MongoDB]\nuri = {mongo_uri.split('?')[0].rstrip('/')}/{db_name}?directConnection=true\n"
                       f"[App]\nAPI_key = {NODE_KEY}\n")
    port = free_port()
    env = clean_service_env()
    env.update({"CONFIG_SECRETS_FILE": str(secrets), "PORT": str(port), "IP_BIND_IP": "127.0.0.1",
                "APP_DATA_DIR": str(tmp_path / "data"), "JOBS_LAYOUT": "none",
                "MONGODB_EMBEDDED_PORT": str(free_port())})
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "wsgi:app", "-k", "gevent",
                               "--access-logfile", "-"], cwd=ROOT, env=env, stdout=open(log, "w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server)
        upload_id = ObjectId()
        with MongoClient(mongo_uri) as client:
            db = client[db_name]
            db.AnnotationContentUpload.insert_one({"_id": upload_id, "status": 0})
            key = "k+y/w=" + NODE_KEY  # not a configured key, but a query string with characters encoded
            answer = requests.get(f"http://127.0.0.1:{port}/api/processContent/status",
                                  params={"upload_id": str(upload_id), "auth_key": NODE_KEY, "x": key})
            assert answer.status_code == 404  # no job for this upload: the server found the secrets file's db
            assert post_node(f"http://127.0.0.1:{port}/api/processContent",
                             fields_for(upload_id, ObjectId(), "./x.mp4", frame_rate="x")).status_code == 400
            assert db.AnnotationContentUpload.find_one({"_id": upload_id})["status"] == 2
            client.drop_database(db_name)
    finally:
        server.terminate()
        server.wait(60)
    assert not (tmp_path / "data" / "mongod.port").exists() and not (tmp_path / "data" / "mongo").exists()
    text = log.read_text()
    assert "GET /api/processContent/status HTTP/1.1" in text
    assert "auth_key" not in text and NODE_KEY not in text and "k%2By%2Fw%3D" not in text


# -- 4: one video, one run ----------------------------------------------------------------------

def test_4_five_requests_for_one_video_start_one_run(make_service):
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


# -- 5, 6: unauthenticated callers write nothing that matters ----------------------------------

@pytest.fixture
def idle(make_service):
    return make_service(APP_RUN_WORKERS="false")


def test_5_a_wrong_key_never_changes_a_finished_upload(service):
    make_video(service.content / "done.mp4", 10, 25)
    upload_id, project_id = new_upload(service.db, "./done.mp4")
    assert post(service, fields_for(upload_id, project_id, "./done.mp4")).status_code == 202
    finished = wait_for_upload(service.db, upload_id)
    assert finished["status"] == 1
    for change in ({"auth_key": "wrong-key"}, {"frame_rate": "x"}, {"content_path": "../../etc/passwd.mp4"}):
        post(service, fields_for(upload_id, project_id, "./done.mp4", **change))
        assert upload_doc(service, upload_id) == finished


def test_6_a_key_sent_in_the_wrong_field_is_masked_in_the_answer_and_the_upload_doc(idle):
    make_video(idle.content / "m.mp4", 5, 25)
    upload_id, project_id = new_upload(idle.db, "./m.mp4")
    for field in ("frame_rate", "force_write", "request_type", "auto_anno_version", "project_id"):
        idle.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {"status": 0}})
        answer = post(idle, fields_for(upload_id, project_id, "./m.mp4", **{field: NODE_KEY}))
        assert answer.status_code == 400
        assert NODE_KEY not in answer.text and "***" in answer.text, field
        doc = upload_doc(idle, upload_id)
        assert doc["status"] == 2 and NODE_KEY not in json.dumps(doc["errorMessage"]), field


def test_6_keys_in_query_strings_never_reach_the_access_log(tmp_path):
    key = "k+y/w=secret key"
    env = clean_service_env()
    port = free_port()
    env.update({"PORT": str(port), "MONGODB_EMBEDDED_PORT": str(free_port()), "APP_API_KEY": key,
                "APP_DATA_DIR": str(tmp_path / "data"), "STORAGE_URL": str(tmp_path / "storage")})
    log = tmp_path / "app.log"
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=open(log, "w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server)
        for params in ({"upload_id": str(ObjectId()), "auth_key": key},
                       f"upload_id={ObjectId()}&auth_key=k%2By%2fw%3Dsecret+key"):
            requests.get(f"http://127.0.0.1:{port}/api/processContent/status", params=params)
        requests.post(f"http://127.0.0.1:{port}/api/processContent", data={"upload_id": "zz", "x": key})
    finally:
        server.terminate()
        server.wait(60)
    text = log.read_text()
    assert "GET /api/processContent/status HTTP/1.1" in text
    for form in (key, "k%2By%2Fw%3D", "k%2By%2fw%3D", "secret+key", "secret%20key"):
        assert form not in text, form


# -- 7 to 11: paths are checked where they are used -----------------------------------------------

def test_7_a_source_swapped_for_a_link_after_the_202_is_not_followed(idle, tmp_path):
    make_video(idle.content / "swap.mp4", 20, 25)
    outside = make_video(tmp_path / "outside" / "secret.mp4", 20, 25)
    upload_id, project_id = new_upload(idle.db, "./swap.mp4")
    assert post(idle, fields_for(upload_id, project_id, "./swap.mp4")).status_code == 202
    (idle.content / "swap.mp4").unlink()
    (idle.content / "swap.mp4").symlink_to(outside)  # after the check, before the worker reads it
    idle.services.start_workers()
    upload = wait_for_upload(idle.db, upload_id)
    assert upload["status"] == 2 and "outside_root" in upload["errorMessage"]["message"]
    assert idle.db.AnnotationTask.count_documents({}) == 0


def test_7_a_folder_on_the_path_swapped_for_a_link_is_refused(idle, tmp_path):
    make_video(idle.content / "sub" / "v.mp4", 20, 25)
    make_video(tmp_path / "elsewhere" / "v.mp4", 20, 25)
    upload_id, project_id = new_upload(idle.db, "./sub/v.mp4")
    assert post(idle, fields_for(upload_id, project_id, "./sub/v.mp4")).status_code == 202
    (idle.content / "sub").rename(idle.content / "was-sub")
    (idle.content / "sub").symlink_to(tmp_path / "elsewhere")
    idle.services.start_workers()
    upload = wait_for_upload(idle.db, upload_id)
    assert upload["status"] == 2 and "outside_root" in upload["errorMessage"]["message"]


def test_7_a_privacy_output_folder_swapped_for_a_link_gets_nothing_written(make_service, tmp_path):
    from tests.faces import make_face_clip

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


def test_8_image_folder_members_that_link_outside_are_skipped_and_reported(service, tmp_path):
    import cv2
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


def test_9_a_fifo_never_blocks_a_worker(idle):
    os.mkfifo(idle.content / "pipe.mp4")
    upload_id, project_id = new_upload(idle.db, "./pipe.mp4")
    answer = post(idle, fields_for(upload_id, project_id, "./pipe.mp4"))
    assert answer.status_code == 400 and "not a regular file" in answer.json()["message"]
    # Swapped in after the request was accepted: the job fails at once instead of waiting forever.
    make_video(idle.content / "later.mp4", 10, 25)
    upload_id, project_id = new_upload(idle.db, "./later.mp4")
    assert post(idle, fields_for(upload_id, project_id, "./later.mp4")).status_code == 202
    (idle.content / "later.mp4").unlink()
    os.mkfifo(idle.content / "later.mp4")
    idle.services.start_workers()
    upload = wait_for_upload(idle.db, upload_id, timeout=30)
    assert upload["status"] == 2 and "not_a_regular_file" in upload["errorMessage"]["message"]


@pytest.mark.parametrize("path", ["./" + "n" * 300 + ".mp4", "./" + "/".join(["d" * 200] * 25) + "/x.mp4"])
def test_10_names_too_long_for_the_filesystem_are_400_and_recorded(idle, path):
    upload_id, project_id = new_upload(idle.db, path)
    answer = post(idle, fields_for(upload_id, project_id, path))
    assert answer.status_code == 400, answer.text
    assert upload_doc(idle, upload_id)["errorMessage"]["error_code"] == 400


def test_10_a_privacy_file_name_of_a_megabyte_is_400(make_service, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    for name in (b"x" * 1_000_000, b"a" * 300 + b".mp4"):
        answer = requests.post(f"{service.url}/process_video", data=name)
        assert (answer.status_code, answer.text) == (400, "Error: invalid file name")


def test_11_the_services_own_folders_are_never_content(make_service, tmp_path):
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


# -- 12 to 15: requests must name things that exist and belong together ------------------------

def test_12_the_upload_must_belong_to_the_named_project_which_must_exist(idle):
    make_video(idle.content / "p.mp4", 5, 25)
    upload_id, project_a = new_upload(idle.db, "./p.mp4")
    project_b = ObjectId()
    idle.db.AnnotationProject.insert_one({"_id": project_b, "contentUploads": []})
    answer = post(idle, fields_for(upload_id, project_b, "./p.mp4"))
    assert answer.status_code == 400 and str(project_a) in answer.json()["message"]
    assert upload_doc(idle, upload_id)["errorMessage"]["error_code"] == 400
    orphan = ObjectId()
    idle.db.AnnotationContentUpload.insert_one({"_id": orphan, "projectId": (ghost := ObjectId()), "status": 0})
    answer = post(idle, fields_for(orphan, ghost, "./p.mp4"))
    assert answer.status_code == 404 and "project" in answer.json()["message"]
    assert upload_doc(idle, orphan)["errorMessage"]["error_code"] == 404
    assert idle.db.ProcessingJob.count_documents({}) == 0
    assert idle.db.AnnotationProject.find_one({"_id": project_b})["contentUploads"] == []


def test_13_stored_errors_name_no_server_paths_and_status_needs_the_key(service):
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


def test_13_the_privacy_api_without_a_key_answers_only_loopback(make_service, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    client = service.app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.post("/process_video", data=b"x.mp4", environ_base=remote).status_code == 403
    assert client.get("/process_status?filename=x.mp4", environ_base=remote).status_code == 403
    assert client.get("/health", environ_base=remote).status_code == 200
    assert client.post("/process_video", data=b"x.mp4", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404
    opened = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"),
                          PRIVACY_ALLOW_REMOTE_WITHOUT_KEY="true")
    assert opened.app.test_client().post("/process_video", data=b"x.mp4", environ_base=remote).status_code == 404


@pytest.mark.parametrize("kind", ["node", "urlencoded", "json"])
@pytest.mark.parametrize("field", ["upload_id", "project_id"])
def test_14_an_object_id_with_a_trailing_newline_is_400(idle, kind, field):
    make_video(idle.content / "n.mp4", 5, 25)
    upload_id, project_id = new_upload(idle.db, "./n.mp4")
    fields = fields_for(upload_id, project_id, "./n.mp4")
    fields[field] += "\n"
    url = f"{idle.url}/api/processContent"
    answer = {"node": lambda: post_node(url, fields), "urlencoded": lambda: requests.post(url, data=fields),
              "json": lambda: requests.post(url, json=fields)}[kind]()
    assert answer.status_code == 400 and "invalid ObjectId" in answer.text


def test_15_a_chunked_body_over_the_limit_is_413_and_deep_json_is_400(idle):
    upload_id, project_id = new_upload(idle.db, "./x.mp4")
    body = "&".join(f"{k}={v}" for k, v in fields_for(upload_id, project_id, "./x.mp4").items())
    body = (body + "&pad=" + "y" * 1_100_000).encode()
    host, port = idle.url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /api/processContent HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert upload_doc(idle, upload_id)["status"] == 0 and idle.db.ProcessingJob.count_documents({}) == 0
    deep = requests.post(f"{idle.url}/api/processContent", data="[" * 100_000 + "]" * 100_000,
                         headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and "nested" in deep.json()["message"]


# -- 16, 17: media that changes or lies ----------------------------------------------------------

def test_16_a_source_truncated_while_it_is_read_fails_instead_of_a_partial_success(service):
    clip = make_video(service.content / "shrinks.mp4", 600, 25, size=(480, 360))
    upload_id, project_id = new_upload(service.db, "./shrinks.mp4", frames_per_task=3)
    assert post(service, fields_for(upload_id, project_id, "./shrinks.mp4", frame_rate=25)).status_code == 202
    wait_for(lambda: (service.db.ProcessingJob.find_one({"_id": f"content:{upload_id}"}) or {}).get(
        "checkpoint", {}).get("next_task", 0) >= 2, interval=0.005)
    os.truncate(clip, clip.stat().st_size // 3)  # overwritten in place while the worker reads it
    upload = wait_for_upload(service.db, upload_id)
    assert upload["status"] == 2 and upload["errorMessage"]["message"].startswith("source_changed")
    assert service.db.AnnotationTask.count_documents({"uploadId": upload_id}) == 0


def _damage_middle(path: Path) -> None:
    """Garbage over a stretch in the middle of the file (its size and the probe's count unchanged)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    data[start:start + len(data) // 5] = bytes((i * 131) % 256 for i in range(len(data) // 5))
    path.write_bytes(bytes(data))


def test_16_frames_lost_in_decoding_fail_beyond_the_tolerance_and_are_recorded_within_it(make_service):
    strict = make_service()
    clip = make_video(strict.content / "damaged.mkv", 120, 25)
    _damage_middle(clip)
    upload_id, project_id = new_upload(strict.db, "./damaged.mkv")
    assert post(strict, fields_for(upload_id, project_id, "./damaged.mkv")).status_code == 202
    upload = wait_for_upload(strict.db, upload_id)
    assert upload["status"] == 2 and upload["errorMessage"]["message"].startswith("frames_lost"), upload
    lenient = make_service(CONTENT_MAX_LOST_FRAMES_PERCENT="90")
    upload_id, project_id = new_upload(lenient.db, "./damaged.mkv")
    assert post(lenient, fields_for(upload_id, project_id, "./damaged.mkv")).status_code == 202
    upload = wait_for_upload(lenient.db, upload_id)
    assert upload["status"] == 1 and upload["framesExpected"] == 120
    assert 0 < upload["framesDecoded"] < 120


@pytest.mark.parametrize("name,ext", [("photo.mp4", ".png"), ("photo.mov", ".jpg")])
def test_17_a_still_image_named_as_a_video_is_refused_pointing_at_content_type_2(service, name, ext):
    import cv2
    import numpy as np
    ok, data = cv2.imencode(ext, np.full((120, 160, 3), 90, np.uint8))
    (service.content / name).write_bytes(data.tobytes())
    upload_id, project_id = new_upload(service.db, f"./{name}")
    assert post(service, fields_for(upload_id, project_id, f"./{name}")).status_code == 202
    upload = wait_for_upload(service.db, upload_id)
    message = upload["errorMessage"]["message"]
    assert upload["status"] == 2 and message.startswith("still_image") and "content_type 2" in message


# -- 18, 19: storage and detectors fail the right way --------------------------------------------

def test_19_a_detector_outage_is_retried_not_blacked_out(make_service, tmp_path):
    from media_service.detectors.centerface import CenterFace
    from tests.faces import make_face_clip
    from tests.rekognition_stand_in import RekognitionStandIn
    from tests.test_privacy import wait_done

    stand_in = RekognitionStandIn(face_detector=CenterFace(threshold=0.2, threads=2))
    stand_in.throttle = 4  # throttled past botocore's retries (2 attempts a call), twice
    videos = tmp_path / "videos"
    make_face_clip(videos / "out.mp4", frames=8, audio=False)
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos), PRIVACY_DETECTOR="rekognition",
                           PRIVACY_REKOGNITION_ENDPOINT_URL=stand_in.url, S3_ACCESS_KEY_ID="AKIDEXAMPLE",
                           S3_SECRET_ACCESS_KEY="secret", REKOGNITION_MAX_ATTEMPTS="2",
                           JOBS_RETRY_BACKOFF_SECONDS="0.2", PRIVACY_DETECT_EVERY="2")
    try:
        assert requests.post(f"{service.url}/process_video", data=b"out.mp4").status_code == 202
        state = wait_done(service.url, "out.mp4")
    finally:
        stand_in.close()
    job = service.db.ProcessingJob.find_one({"_id": "privacy:out.mp4"})
    assert state["state"] == "done" and job["attempts"] >= 2  # the outage cost attempts, not frames
    assert "ThrottlingException" in job["history"][0]["error"]
    assert state["result"]["blacked_out_frames"] == 0
    log = json.loads((videos / "out-processed.regions.json").read_text())
    assert log["blacked_out_frames"] == 0 and not [r for r in log["regions"] if r["origin"] == "fail-closed"]


def test_19_too_many_blacked_out_frames_is_not_a_success(tmp_path):
    from media_service.contract import PrivacyOutputs
    from media_service.detectors.centerface import CenterFace
    from media_service.privacy.pipeline import PrivacyPipeline, TooManyBlackedOut
    from tests.faces import make_face_clip
    from tests.test_privacy import FailingOn, settings

    source = tmp_path / "dark.mp4"
    make_face_clip(source, frames=20, audio=False)
    outputs = PrivacyOutputs.for_source(source, tmp_path)
    with pytest.raises(TooManyBlackedOut):
        PrivacyPipeline(FailingOn(CenterFace(0.2, 2), {3, 4}), settings(max_blacked_out_percent=5), 7680,
                        4320).run(source, outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dark.mp4"]


# -- 20 to 22: contract and privacy ---------------------------------------------------------------

@pytest.mark.parametrize("on_doc,expected", [(20, 20), (None, 120), ("abc", 120), (0, 120)])
def test_20_tasks_are_cut_by_the_frames_per_task_node_set(service, on_doc, expected):
    make_video(service.content / "fpt.mp4", 150, 25)
    upload_id, project_id = new_upload(service.db, "./fpt.mp4")
    service.db.AnnotationContentUpload.update_one({"_id": upload_id}, {"$set": {"frames_per_task": on_doc}}
                                                  if on_doc is not None else {"$unset": {"frames_per_task": ""}})
    assert post(service, fields_for(upload_id, project_id, "./fpt.mp4", frame_rate=25)).status_code == 202
    assert wait_for_upload(service.db, upload_id)["status"] == 1
    counts = [t["frameCount"] for t in service.db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart")]
    assert counts[0] == min(expected, 150) and sum(counts) == 150
    assert upload_doc(service, upload_id)["frames_per_task"] == expected


def test_21_a_face_left_visible_by_the_blur_is_hidden_harder(tmp_path):
    import numpy as np

    from media_service.contract import PrivacyOutputs
    from media_service.detectors.centerface import CenterFace
    from media_service.privacy.pipeline import PrivacyPipeline
    from tests.faces import make_face_clip
    from tests.test_privacy import settings, upright_frames

    judge = CenterFace(threshold=0.3, threads=2)
    source = tmp_path / "weak.mp4"
    make_face_clip(source, frames=12, audio=False)
    outputs = PrivacyOutputs.for_source(source, tmp_path)
    # A blur far too weak to hide anything on its own: 48 cells across a face.
    PrivacyPipeline(CenterFace(0.2, 2), settings(cells=48, detect_every=2), 7680, 4320).run(source, outputs)
    log = json.loads(outputs.log_final.read_text())
    assert log["hidden_harder"] + log["filled"] > 0
    assert {r.get("check") for r in log["regions"]} >= {"hidden harder"} or log["filled"]
    for frame in upright_frames(outputs.final):
        assert judge.detect(np.ascontiguousarray(frame[:, :, ::-1])) == []


def test_21_the_default_blur_leaves_nothing_a_detector_sees_at_0_3(make_service, tmp_path):
    import numpy as np

    from media_service.detectors.centerface import CenterFace
    from tests.faces import make_face_clip
    from tests.test_privacy import upright_frames, wait_done

    videos = tmp_path / "videos"
    make_face_clip(videos / "d.mp4", frames=30, size=(640, 360), audio=False)
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(videos))
    assert requests.post(f"{service.url}/process_video", data=b"d.mp4").status_code == 202
    assert wait_done(service.url, "d.mp4")["state"] == "done"
    judge = CenterFace(threshold=0.3, threads=2)
    for number, frame in enumerate(upright_frames(videos / "d-processed.mp4"), 1):
        assert judge.detect(np.ascontiguousarray(frame[:, :, ::-1])) == [], number


def test_22_unknown_files_get_the_old_servers_answers(make_service, tmp_path):
    (tmp_path / "videos").mkdir()
    service = make_service(PRIVACYPAL_VIDEO_DIRECTORY=str(tmp_path / "videos"))
    status = requests.get(f"{service.url}/process_status", params={"filename": "nope.mp4"})
    assert (status.status_code, status.text) == (404, "Process does not exist")
    cancel = requests.post(f"{service.url}/cancel_process", data=b"nope.mp4")
    assert (cancel.status_code, cancel.text) == (404, "Process does not exist in the current runtime")
