"""Hostile input, faults and review findings (issue 11): one test per class of defect, numbered as
in the issue. Each failed before its fix."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient

from media_service.embedded_mongo import EmbeddedMongo
from tests.conftest import NODE_KEY, ROOT
from tests.helpers import (
    clean_service_env,
    fields_for,
    free_port,
    new_upload,
    post,
    post_node,
    wait_for,
    wait_for_upload,
    wait_until_ready,
)
from tests.media import make_video

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


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_2_ready_is_503_when_a_worker_thread_is_gone(make_service):
    service = make_service()
    pool = service.services.pool
    pool.handlers["dying"] = DyingHandler()
    service.services.mongo.jobs.enqueue("dying:1", "dying", "1", {}, 1)
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



# -- 5, 6: unauthenticated callers write nothing that matters ----------------------------------



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



# -- 12 to 15: requests must name things that exist and belong together ------------------------



# -- 16, 17: media that changes or lies ----------------------------------------------------------



# -- 18, 19: storage and detectors fail the right way --------------------------------------------



# -- 20 to 22: contract and privacy ---------------------------------------------------------------

