"""Operations (issue 14): metrics across processes, structured logs, gunicorn with the secrets file, and
access logs that never carry a key."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import requests
from bson import ObjectId
from pymongo import MongoClient

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
from tests.test_embedded_mongo import LOCAL_KEY, embedded_env, node_client


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        have = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and all(part in have.split(",") for part in wanted.split(",") if part):
            total += float(value)
    return total


def test_metrics_move_when_a_job_runs_and_add_up_over_two_processes(tmp_path):
    """`python app.py` without workers and a `worker.py` beside it: the worker's frames, stages and
    jobs show in the app's /metrics; JSON logs of the job carry its ids and stage."""
    env = embedded_env(tmp_path, APP_RUN_WORKERS="false", APP_LOG_FORMAT="json")
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=open(tmp_path / "app.log", "w"))
    worker = None
    try:
        base = f"http://127.0.0.1:{env['PORT']}"
        wait_until_ready(base, app)
        before = requests.get(f"{base}/metrics", timeout=10)
        assert before.status_code == 200 and before.headers["Content-Type"].startswith("text/plain")
        assert metric(before.text, "media_frames_total", stage="encode") == 0
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(tmp_path / "worker.log", "w"))
        make_video(tmp_path / "content" / "m.mp4", 50, 25)
        with node_client(env) as node:
            db = node["annotation_platform"]
            upload_id, project_id = new_upload(db, "./m.mp4", frames_per_task=5)
            queued = metric(requests.get(f"{base}/metrics").text, "media_queue_depth", kind="content")
            assert post_node(f"{base}/api/processContent",
                             fields_for(upload_id, project_id, "./m.mp4", auth_key=LOCAL_KEY)).status_code == 202
            assert metric(requests.get(f"{base}/metrics").text, "media_queue_depth", kind="content") in (queued + 1, 0)
            assert wait_for_upload(db, upload_id)["status"] == 1
        after = requests.get(f"{base}/metrics").text
    finally:
        for process in (worker, app):
            if process:
                process.terminate()
                process.wait(60)
    assert metric(after, "media_frames_total", stage="encode") == 10  # counted in worker.py, shown by app.py
    assert metric(after, "media_frames_total", stage="decode") == 50
    assert metric(after, "media_jobs", kind="content", state="done") == 1
    assert metric(after, "media_jobs_ended_total", kind="content", outcome="done") == 1
    assert metric(after, "media_job_stage_seconds_count", kind="content", stage="tasks") == 1
    assert metric(after, "media_http_requests_total", route="/api/processContent", method="POST", status="202") == 1

    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.strip()]
    mine = [line for line in lines if line.get("upload_id") == str(upload_id)]
    assert any("committed task-1-m" in line["message"] for line in mine)
    assert all(line["job_id"] == f"content:{upload_id}" and line["kind"] == "content" for line in mine)
    assert {line.get("stage") for line in mine} >= {"probe", "tasks"}
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)


def test_logs_never_carry_a_password_a_key_or_a_presigned_signature():
    import io

    from media_service.logging_setup import _ContextFilter, _JsonFormatter, job_context

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter(["s3cret-pass", "the-api-key"]))
    handler.addFilter(_ContextFilter())
    log = logging.getLogger("probe.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        with job_context("upload=x", job_id="content:x", kind="content", upload_id="x"):
            log.warning("connecting to mongodb://media:s3cret-pass@db:27017/x with key %s", "the-api-key")
            log.warning("url http://s3/b/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261122"
                        "&X-Amz-Signature=0123abcd&X-Amz-Expires=600")
            try:
                raise ValueError("the-api-key in a traceback")
            except ValueError:
                log.exception("failure")
        log.warning("outside any job")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 4
    joined = stream.getvalue()
    assert "s3cret-pass" not in joined and "the-api-key" not in joined and "0123abcd" not in joined
    assert "AKID" not in joined and "X-Amz-Expires=600" in joined and "ValueError" in lines[2]["exception"]
    assert all(line["job_id"] == "content:x" and line["upload_id"] == "x" for line in lines[:3])
    assert "job_id" not in lines[3]


def test_gunicorn_takes_mongo_uri_from_the_secrets_file_and_logs_no_query_string(mongo_uri, tmp_path):
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


def test_keys_in_query_strings_never_reach_the_access_log(tmp_path):
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
