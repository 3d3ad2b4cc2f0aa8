"""Test helpers: Node-style requests, upload docs, waiting for jobs."""
from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable

import requests
from bson import ObjectId

from tests.conftest import NODE_KEY


def clean_service_env(**extra: str) -> dict[str, str]:
    """This process's environment without the service's own settings, for a service started as a
    subprocess. PROMETHEUS_MULTIPROC_DIR goes too: an in-process test set it, and a subprocess that
    inherited it would show that test's counters."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MONGO", "STORAGE", "APP_", "JOBS_", "PROMETHEUS_"))}
    env.update(extra)
    return env


def node_multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """A body built the way the npm `form-data` package builds it (what the Node backend sends)."""
    boundary = "-" * 26 + "".join(random.choice("0123456789") for _ in range(24))
    parts = []
    for name, value in fields.items():
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    parts.append(f"--{boundary}--\r\n")
    return "".join(parts).encode(), f"multipart/form-data; boundary={boundary}"


def post_node(url: str, fields: dict[str, str]) -> requests.Response:
    body, content_type = node_multipart(fields)
    return requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=30)


def post(service, fields, kind="node"):
    """POST /api/processContent to a test's service: as Node sends it, or url-encoded, or JSON."""
    url = f"{service.url}/api/processContent"
    if kind == "node":
        return post_node(url, fields)
    if kind == "urlencoded":
        return requests.post(url, data=fields, timeout=30)
    return requests.post(url, json=fields, timeout=30)


def upload_doc(service, upload_id):
    return service.db.AnnotationContentUpload.find_one({"_id": upload_id})


def new_upload(db, content_path: str, frame_rate: int = 5, content_type: int = 1,
               frames_per_task: int = 120) -> tuple[ObjectId, ObjectId]:
    """What Node creates before it calls processContent."""
    upload_id, project_id = ObjectId(), ObjectId()
    db.AnnotationProject.insert_one({"_id": project_id, "name": "p", "contentUploads": []})
    db.AnnotationContentUpload.insert_one({
        "_id": upload_id, "projectId": project_id, "sourceFilePath": content_path, "progress": 0, "status": 0,
        "frame_rate": frame_rate, "frames_per_task": frames_per_task, "content_type": content_type, "force_write": 0,
        "request_annotation_version": 0, "request_type": 0, "nodeOwnedField": "keep me",
    })
    return upload_id, project_id


def fields_for(upload, project, path: str, **overrides) -> dict[str, str]:
    """Node's request for this upload; an override of None leaves that field out."""
    fields = {"upload_id": str(upload), "auth_key": NODE_KEY, "project_id": str(project),
              "frame_rate": "5", "content_path": path, "force_write": "0",
              "auto_anno_version": "0", "request_type": "0"}
    fields.update({k: str(v) for k, v in overrides.items() if v is not None})
    for k in [k for k, v in overrides.items() if v is None]:
        fields.pop(k, None)
    return fields


ENDED = ("done", "failed", "cancelled")


def wait_for_upload(db, upload_id, timeout: float = 120, progress_seen: list | None = None) -> dict:
    """The upload doc once its content job has ended; every progress value seen on the way is
    appended to `progress_seen`."""
    def ended():
        upload = db.AnnotationContentUpload.find_one({"_id": upload_id})
        if progress_seen is not None:
            progress_seen.append(upload.get("progress"))
        job = db.ProcessingJob.find_one({"_id": f"content:{upload_id}"})
        return job and job["state"] in ENDED and db.AnnotationContentUpload.find_one({"_id": upload_id})

    return wait_for(ended, timeout, 0.1, lambda: f"the content job of upload {upload_id} to end; the job now: "
                                                 f"{db.ProcessingJob.find_one({'_id': f'content:{upload_id}'})}")


def wait_for(condition, timeout: float = 60, interval: float = 0.05, what: str | Callable[[], str] = "the condition",
             retry_on: tuple[type[BaseException], ...] = ()):
    """The one polling helper of the tests: the first true value of `condition()`, asked every
    `interval` seconds. Past `timeout` the test fails naming `what` it waited for (a function when
    it should say what was seen at that moment) and the last value seen. `retry_on`: exceptions
    that mean "not yet" (a server still starting, an election)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except retry_on as exc:
            value = exc
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what() if callable(what) else what}; "
                                 f"last seen: {value!r}")
        time.sleep(interval)


def wait_for_job(db, job_id: str, ready=lambda job: job["state"] in ENDED, timeout: float = 120,
                 what: str = "") -> dict:
    """The ProcessingJob document once `ready(job)` holds (by default: once the job has ended)."""
    def find():
        return db.ProcessingJob.find_one({"_id": job_id})

    return wait_for(lambda: (job := find()) and ready(job) and job, timeout, 0.02,
                    lambda: f"{what or f'job {job_id} to reach the wanted state'}; the job now: {find()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(base_url: str, process, timeout: float = 60) -> None:
    """Wait for a service started as a subprocess to answer /api/ready."""
    def ready():
        if process.poll() is not None:
            raise AssertionError(f"the service exited with {process.returncode}")
        return requests.get(f"{base_url}/api/ready", timeout=1).status_code == 200

    # Not listening yet, or still starting: ask again.
    wait_for(ready, timeout, 0.2, f"{base_url}/api/ready to answer 200",
             retry_on=(requests.ConnectionError, requests.Timeout))
