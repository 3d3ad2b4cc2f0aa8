"""One processContent request end to end in a fresh service, for the benchmarks (run in a child
process so its time and memory are its own):

    python -m bench.service_run WORK CLIP REQUEST_TYPE RATE

The service runs with its embedded defaults under WORK (settings from the environment apply too),
CLIP relative to WORK. Prints one JSON line: seconds from the request to status 1 (interpreter
start-up and imports not counted), the upload's status and task count, the boxes written, the
service's CPU seconds over that time, and the peak RSS of the service process and of its mongod.
With BENCH_WARM_UP set, a 1-second excerpt of the clip is processed first the same way (the
models loaded and their libraries imported: the steady state of a running service).
"""
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from bson import ObjectId
from werkzeug.serving import make_server

from app import create_app
from media_service.config import load_settings


def main(work: Path, clip: str, request_type: str, rate: str) -> dict:
    settings = load_settings({**os.environ, "APP_API_KEY": "bench-key", "APP_DATA_DIR": str(work / "data"),
                              "MONGODB_EMBEDDED_PORT": "0", "STORAGE_URL": str(work / "storage"),
                              "FOLDERS_CONTENT_BASE": str(work), "FOLDERS_CONTENT_PATH_BASE": str(work),
                              "FOLDERS_TASK_BASE": str(work / "tasks")})
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url, db = f"http://127.0.0.1:{server.server_port}", app.extensions["media"].mongo.db
    if os.environ.get("BENCH_WARM_UP"):  # the steady state: models loaded, imports done, by a 1 s excerpt first
        warm = work / f"warm-up-{Path(clip).name}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(work / clip), "-t", "1", "-c", "copy", str(warm)],
                       check=True)
        upload_and_wait(url, db, warm.name, request_type, rate)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    elapsed, upload = upload_and_wait(url, db, clip, request_type, rate)
    after = resource.getrusage(resource.RUSAGE_SELF)
    doc = db.AnnotationContentUpload.find_one({"_id": upload})
    tasks = [t["_id"] for t in db.AnnotationTask.find({"uploadId": upload}, {"_id": 1})]
    boxes = sum(len(f["boxes"]) for f in db.AnnotationFrame.find({"taskId": {"$in": tasks}}, {"boxes": 1}))
    server.shutdown()
    app.extensions["media"].close(grace=1)
    # The service's own peak apart from its embedded mongod's (a child, waited for by close()).
    return {"seconds": elapsed, "status": doc["status"], "tasks": doc.get("taskCount"), "boxes": boxes,
            "service_cpu_s": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 2),
            "service_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "mongod_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def upload_and_wait(url: str, db, clip: str, request_type: str, rate: str) -> tuple[float, ObjectId]:
    """One upload as Node makes it, from the request to its status 1: (seconds, upload id)."""
    upload, project = ObjectId(), ObjectId()
    labels = [{"label": "Person"}, {"label": "Face"}]  # what auto-annotation may write (request_type 1)
    db.AnnotationProject.insert_one({"_id": project, "contentUploads": [], "labels": labels})
    db.AnnotationContentUpload.insert_one({"_id": upload, "projectId": project, "status": 0, "progress": 0})
    started = time.perf_counter()
    answer = requests.post(f"{url}/api/processContent", data={
        "upload_id": str(upload), "auth_key": "bench-key", "project_id": str(project), "frame_rate": rate,
        "content_path": clip, "force_write": "0", "auto_anno_version": "1" if request_type == "1" else "0",
        "request_type": request_type})
    assert answer.status_code == 202, answer.text
    while db.AnnotationContentUpload.find_one({"_id": upload})["status"] == 0:
        time.sleep(0.05)
    return time.perf_counter() - started, upload


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), *sys.argv[2:5])))
