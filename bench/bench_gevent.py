"""Benchmark: is the production server responsive while videos are processed? (issue 4)

    .venv/bin/python -m bench.bench_gevent [--layout worker-process|web-threads] [--load-seconds 10]

Starts `gunicorn wsgi:app -k gevent --worker-connections 1000` (gunicorn.conf.py: embedded
MongoDB, local storage), then a load generator in a second process on loopback: keep-alive
connections sending `POST /api/processContent` requests that fail validation after a database
lookup (an upload that does not exist) and `GET /api/health`, alternately. The same load runs
once on the idle service and once while two 1080p videos are being cut, in one run.

Layouts: `worker-process` (the default: a separate `worker.py` does the CPU work) and
`web-threads` (the worker pool runs inside the gevent web processes).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from bson import ObjectId

ROOT = Path(__file__).resolve().parents[1]
from bench.bench_pipeline import make_clip  # noqa: E402
from tests.helpers import free_port, wait_until_ready  # noqa: E402


def load(port: int, seconds: float, connections: int) -> dict:
    """Runs in its own process: latencies (ms) of every request, and requests per second."""
    body = json.dumps({"upload_id": str(ObjectId()), "auth_key": "bench-key", "project_id": str(ObjectId()),
                       "frame_rate": "5", "content_path": "./missing.mp4", "force_write": "0",
                       "auto_anno_version": "0", "request_type": "0"})
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, turn = [], index
        while time.perf_counter() < deadline:
            turn += 1
            started = time.perf_counter()
            try:
                if turn % 2:
                    conn.request("GET", "/api/health")
                else:
                    conn.request("POST", "/api/processContent", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status not in (200, 404):
                    raise RuntimeError(response.status)
            except Exception:
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 1) if latencies else -1

    return {"requests": len(latencies), "errors": errors[0], "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": round(latencies[-1], 1) if latencies else -1}


def run_load(port: int, seconds: float, connections: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.bench_gevent", "--load-only", str(port), str(seconds),
                          str(connections)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", choices=["worker-process", "web-threads"], default="worker-process")
    parser.add_argument("--load-seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--clip-seconds", type=int, default=90)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("a.mp4", "b.mp4"):
            make_clip(work / name, args.clip_seconds)
        port, mongo_port = free_port(), free_port()
        env = {**os.environ, "PORT": str(port), "IP_BIND_IP": "127.0.0.1", "APP_API_KEY": "bench-key",
               "APP_DATA_DIR": str(work / "data"), "STORAGE_URL": str(work / "storage"),
               "FOLDERS_CONTENT_BASE": str(work), "FOLDERS_CONTENT_PATH_BASE": str(work),
               "FOLDERS_TASK_BASE": str(work / "tasks"), "MONGODB_EMBEDDED_PORT": str(mongo_port),
               "JOBS_LAYOUT": args.layout, "APP_LOG_LEVEL": "warning"}
        server = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "wsgi:app", "-k", "gevent",
                                   "--worker-connections", "1000", "--access-logfile", "/dev/null"],
                                  cwd=ROOT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_ready(base, server)
            idle = run_load(port, args.load_seconds, args.connections)

            from pymongo import MongoClient
            db = MongoClient(f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true")["annotation_platform"]
            uploads = []
            for name in ("a.mp4", "b.mp4"):
                upload, project = ObjectId(), ObjectId()
                db.AnnotationProject.insert_one({"_id": project, "contentUploads": []})
                db.AnnotationContentUpload.insert_one({"_id": upload, "projectId": project, "status": 0})
                answer = requests.post(f"{base}/api/processContent", data={
                    "upload_id": str(upload), "auth_key": "bench-key", "project_id": str(project), "frame_rate": "5",
                    "content_path": f"./{name}", "force_write": "0", "auto_anno_version": "0",
                    "request_type": "0"}, timeout=30)
                assert answer.status_code == 202, answer.text
                uploads.append(upload)
            while not all(db.ProcessingJob.find_one({"_id": f"content:{u}"}, {"state": 1})["state"] == "running"
                          for u in uploads):
                time.sleep(0.1)
            busy = run_load(port, args.load_seconds, args.connections)
            still_running = [db.AnnotationContentUpload.find_one({"_id": u})["status"] == 0 for u in uploads]
            print(json.dumps({"layout": args.layout, "cores": os.cpu_count(), "idle": idle, "busy": busy,
                              "busy_rps_vs_idle": round(busy["rps"] / idle["rps"], 3),
                              "videos_still_processing_at_end_of_load": still_running}))
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--load-only":
        print(json.dumps(load(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
