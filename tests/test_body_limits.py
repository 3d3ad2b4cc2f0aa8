"""Bodies over the limit cost no memory (issue 21, item 3): a real server process (`python app.py`,
Werkzeug's server, and gunicorn's gevent worker as in production) is sent chunked bodies far over
the limit; each is answered 413 and the process's peak memory (`VmHWM`, reset through
/proc/<pid>/clear_refs before each request) grows by less than a few MB. Bodies within the limit
still work, the try-it page's upload up to its own larger limit included. In process: a chunked body
over the limit is 413 before anything is written, and JSON nested too deep is 400."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient

from tests.conftest import NODE_KEY, ROOT, service_env
from tests.helpers import clean_service_env, fields_for, free_port, new_upload, upload_doc, wait_until_ready

MIB = 1 << 20
LIMIT = MIB                # [App] max_request_bytes
TRY_IT_LIMIT = 8 * MIB     # [App] try_it_max_bytes
SENT = 64 * MIB            # what a hostile client sends
GROWTH_MAX = 4 * MIB       # the limit held once (url-encoded, JSON, raw bodies) and a little more


class Server:
    def __init__(self, kind: str, tmp: Path, mongo_uri: str):
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "privacy").mkdir()
        (tmp / "privacy" / "clip.mp4").write_bytes(b"not decoded: no workers run here")
        env = service_env(tmp, mongo_uri, PORT=str(self.port), IP_BIND_IP="127.0.0.1", APP_RUN_WORKERS="false",
                          JOBS_LAYOUT="none", WEB_CONCURRENCY="1", APP_TRY_IT="true",
                          APP_MAX_REQUEST_BYTES=str(LIMIT), APP_TRY_IT_MAX_BYTES=str(TRY_IT_LIMIT),
                          PRIVACY_INPUT_DIR=str(tmp / "privacy"))
        self.db_name = env["MONGODB_DB_NAME"]
        # A fixed mmap threshold gives every freed large buffer back to the system at once, so each
        # request's own peak shows in VmHWM instead of hiding in memory an earlier one left behind.
        env = clean_service_env(**env, MALLOC_MMAP_THRESHOLD_="131072")
        command = ([sys.executable, "app.py"] if kind == "dev" else
                   [str(Path(sys.executable).with_name("gunicorn")), "wsgi:app", "-k", "gevent"])
        self.log = tmp / "server.log"
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(self.log, "w"),
                                        stderr=subprocess.STDOUT)
        wait_until_ready(self.url, self.process)
        if kind == "dev":
            self.pid = self.process.pid
        else:  # the one gunicorn worker answers the requests
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            self.pid = int(children[0])

    def peak_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))

    def growth(self, send) -> tuple[requests.Response, int]:
        """The answer to `send()` and how far the server's peak memory rose meanwhile (bytes)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # the peak starts again at the current size
        before = self.peak_kib()
        answer = send()
        return answer, (self.peak_kib() - before) * 1024

    def stop(self):
        self.process.terminate()
        self.process.wait(60)


@pytest.fixture(scope="module", params=["dev", "gunicorn"])
def server(request, tmp_path_factory, mongo_uri):
    live = Server(request.param, tmp_path_factory.mktemp(f"limits-{request.param}"), mongo_uri)
    yield live
    live.stop()
    with MongoClient(mongo_uri) as client:
        client.drop_database(live.db_name)


def endless(head: bytes, total: int = SENT, tail: bytes = b""):
    """A chunked body (requests sends a generator without Content-Length), never held whole here."""
    yield head
    piece, sent = b"y" * (64 * 1024), 0
    while sent < total:
        yield piece
        sent += len(piece)
    yield tail


def multipart(field: str, filename: str, size: int, boundary: str = "b0undary"):
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"frame_rate\"\r\n\r\n5\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return endless(head, size, f"\r\n--{boundary}--\r\n".encode()), f"multipart/form-data; boundary={boundary}"


OVER_THE_LIMIT = {
    "urlencoded": ("/api/processContent", "application/x-www-form-urlencoded", lambda: endless(b"pad=")),
    "json": ("/api/processContent", "application/json", lambda: endless(b'{"pad": "')),
    "multipart": ("/api/processContent", "multipart/form-data; boundary=b0undary",
                  lambda: multipart("video", "big.mp4", SENT)[0]),
    "privacy raw body": ("/process_video", "text/plain", lambda: endless(b"clip.mp4")),
    "try-it upload": ("/jobs/try", "multipart/form-data; boundary=b0undary",
                      lambda: multipart("video", "big.mp4", SENT)[0]),
}


@pytest.mark.parametrize("case", list(OVER_THE_LIMIT))
def test_a_chunked_body_over_the_limit_is_413_without_the_process_growing(server, case):
    path, content_type, body = OVER_THE_LIMIT[case]
    headers = {"Content-Type": content_type, "X-API-Key": NODE_KEY}
    answer, grew = server.growth(lambda: requests.post(server.url + path, data=body(), headers=headers, timeout=120))
    assert answer.status_code == 413, answer.text[:300]
    assert "larger than" in answer.json()["message"]
    assert grew < GROWTH_MAX, f"{case}: the server grew by {grew / MIB:.1f} MiB for a refused body"


def gunicorn_read_ahead() -> int:
    """gunicorn reads a body of known length ahead, as much as one recv() returns: up to a whole
    socket receive buffer (the largest the kernel lets one grow to), whatever the body's size."""
    return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])


def test_a_declared_length_over_the_limit_is_413_without_the_process_growing(server):
    allowed = GROWTH_MAX + (gunicorn_read_ahead() if server.kind == "gunicorn" else 0)

    def send():  # Content-Length says 64 MiB: refused before reading, and what follows is dropped
        return requests.post(f"{server.url}/api/processContent", data=b"pad=" + b"y" * SENT,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=120)
    answer, grew = server.growth(send)
    assert answer.status_code == 413 and answer.json()["status"] == 413
    assert grew < allowed, f"the server grew by {grew / MIB:.1f} MiB for a refused body"


def test_chunked_bodies_within_the_limit_still_work(server, mongo_uri):
    upload_id = ObjectId()
    fields = {"upload_id": str(upload_id), "auth_key": NODE_KEY, "project_id": str(ObjectId()),
              "frame_rate": "5", "content_path": "./x.mp4", "force_write": "0", "auto_anno_version": "0",
              "request_type": "0"}
    pad = LIMIT - 4096  # the fields come after the padding: a cut body would lose them
    form = ("pad=" + "y" * pad + "&" + "&".join(f"{k}={v}" for k, v in fields.items())).encode()
    answer = requests.post(f"{server.url}/api/processContent", data=iter([form[:1000], form[1000:]]),
                           headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert answer.status_code == 404 and f"upload {upload_id} not found" in answer.json()["message"], answer.text[:300]

    body = json.dumps({"pad": "y" * pad, **fields}).encode()
    answer = requests.post(f"{server.url}/api/processContent", data=iter([body[:1000], body[1000:]]),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 404 and f"upload {upload_id} not found" in answer.json()["message"], answer.text[:300]

    name = b"clip.mp4" + b" " * pad  # the first API version: the file name as the whole body
    answer = requests.post(f"{server.url}/process_video", data=iter([name[:1000], name[1000:]]), timeout=30)
    assert answer.status_code == 202 and answer.text == "Success: file exists."

    # The try-it page takes a video larger than [App] max_request_bytes, up to its own limit.
    body, content_type = multipart("video", "clip.mp4", 3 * MIB)
    answer = requests.post(f"{server.url}/jobs/try", data=body, timeout=60,
                           headers={"Content-Type": content_type, "X-API-Key": NODE_KEY})
    assert answer.status_code == 202, answer.text[:300]
    with MongoClient(mongo_uri) as client:
        db = client[server.db_name]
        assert db.ProcessingJob.count_documents({"kind": "privacy"}) == 1
        upload = db.AnnotationContentUpload.find_one({"_id": ObjectId(answer.json()["upload_id"])})
    saved = server.log.parent / "content" / upload["sourceFilePath"].removeprefix("./")
    assert saved.stat().st_size >= 3 * MIB


def test_a_chunked_body_over_the_limit_is_413_and_deep_json_is_400(idle_service):
    upload_id, project_id = new_upload(idle_service.db, "./x.mp4")
    body = "&".join(f"{k}={v}" for k, v in fields_for(upload_id, project_id, "./x.mp4").items())
    body = (body + "&pad=" + "y" * 1_100_000).encode()
    host, port = idle_service.url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /api/processContent HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert upload_doc(idle_service, upload_id)["status"] == 0 and idle_service.db.ProcessingJob.count_documents({}) == 0
    deep = requests.post(f"{idle_service.url}/api/processContent", data="[" * 100_000 + "]" * 100_000,
                         headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and "nested" in deep.json()["message"]
