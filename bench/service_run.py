"""One processContent request end to end in a fresh service, for the benchmarks (run in a child
process so its time and memory are its own):

    python -m bench.service_run WORK CLIP REQUEST_TYPE RATE

The service runs with its embedded defaults under WORK (settings from the environment apply too),
CLIP relative to WORK. Prints one JSON line: seconds from the request to status 1 (interpreter
start-up and imports not counted), the upload's status and task count, the boxes written, and the
peak RSS of the service process and of its mongod.
"""
import json
import os
import resource
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
    db = app.extensions["media"].mongo.db
    upload, project = ObjectId(), ObjectId()
    labels = [{"label": "Person"}, {"label": "Face"}]  # what auto-annotation may write (request_type 1)
    db.AnnotationProject.insert_one({"_id": project, "contentUploads": [], "labels": labels})
    db.AnnotationContentUpload.insert_one({"_id": upload, "projectId": project, "status": 0, "progress": 0})
    started = time.perf_counter()
    answer = requests.post(f"http://127.0.0.1:{server.server_port}/api/processContent", data={
        "upload_id": str(upload), "auth_key": "bench-key", "project_id": str(project), "frame_rate": rate,
        "content_path": clip, "force_write": "0", "auto_anno_version": "1" if request_type == "1" else "0",
        "request_type": request_type})
    assert answer.status_code == 202, answer.text
    while db.AnnotationContentUpload.find_one({"_id": upload})["status"] == 0:
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    doc = db.AnnotationContentUpload.find_one({"_id": upload})
    boxes = sum(len(f["boxes"]) for f in db.AnnotationFrame.find({}, {"boxes": 1}))
    server.shutdown()
    app.extensions["media"].close(grace=1)
    # The service's own peak apart from its embedded mongod's (a child, waited for by close()).
    return {"seconds": elapsed, "status": doc["status"], "tasks": doc.get("taskCount"), "boxes": boxes,
            "service_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "mongod_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), *sys.argv[2:5])))
