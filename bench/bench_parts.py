"""Benchmark: one long video cut by one worker, then by two, then by eight with one killed (issue 31).

    .venv/bin/python -m bench.bench_parts [--minutes 10] [--rate 5] [--tasks-per-part 1] [--gop 60]

A `--minutes` 1080p 30 fps H.264 clip (ffmpeg testsrc2, a keyframe every `--gop` frames), cut at
`--rate` fps into tasks of 120 frames (the platform's standard), on the embedded mongod and local
storage, the request sent through the real POST /api/processContent:

1. one `worker.py` (one thread) pinned to core 0 (`taskset`), the upload as one job
   (`[Content] tasks_per_part = 0`): what splitting is measured against, documents included;
2. the same worker, the upload cut in parts of `--tasks-per-part` tasks: what splitting costs;
3. two `worker.py` (one thread each) pinned to cores 0 and 1, the same parts: the time against
   one worker's (the issue's ratio) and against one job's;
4. eight `worker.py` (one thread each, on the 2 cores), one of them killed with SIGKILL while it holds
   a part with a task committed: the upload must end status 1 once, every part done, the killed part
   resumed in a second attempt, and the documents identical to the baseline's.

5. tracks: real pedestrians (vtest.avi) auto-annotated in tasks of 20 frames, as one job and in
   parts of one task: how many tracks keep one id across the part boundaries.

Time is from the request to the upload's status 1. Prints one JSON line per run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bson import ObjectId

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "bench-key"


def make_clip(path: Path, minutes: float, gop: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size=1920x1080:rate=30:d={int(minutes * 60)}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p", str(path)], check=True)


def env_for(work: Path, uri: str, db: str, per_part: int) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("MONGO", "STORAGE", "APP_", "JOBS_"))},
            "MONGO_URI": uri, "MONGODB_DB_NAME": db, "APP_API_KEY": KEY, "STORAGE_URL": str(work / f"{db}-store"),
            "FOLDERS_CONTENT_BASE": str(work), "FOLDERS_CONTENT_PATH_BASE": str(work),
            "FOLDERS_TASK_BASE": str(work / f"{db}-tasks"), "APP_DATA_DIR": str(work / f"{db}-data"),
            "CONTENT_TASKS_PER_PART": str(per_part), "JOBS_POLL_SECONDS": "0.2", "JOBS_LEASE_SECONDS": "10",
            "JOBS_HEARTBEAT_SECONDS": "2", "JOBS_WORKER_NICE": "0"}


UPLOAD, PROJECT = ObjectId(), ObjectId()  # the same in every run's database: the same object keys


def run(work: Path, uri: str, name: str, per_part: int, cores: list[int | None], rate: int,
        kill_one: bool = False) -> dict:
    """The clip cut by one worker process per entry of `cores` (pinned there, or not when None)."""
    from werkzeug.serving import make_server

    import mongo_manager
    from app import create_app
    from media_service.config import load_settings
    from tests.helpers import fields_for, post_node

    env = env_for(work, uri, name, per_part)
    settings = load_settings({**env, "APP_RUN_WORKERS": "false"})
    app = create_app(settings, start_workers=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db = mongo_manager.connect(uri, name).db
    workers = [subprocess.Popen((["taskset", "-c", str(core)] if core is not None else []) +
                                [sys.executable, "worker.py", "--threads", "1"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=open(work / f"{name}-worker{i}.log", "w"))
               for i, core in enumerate(cores)]
    killed = None
    try:
        time.sleep(3)  # the workers are up (imports, connections) before the clock starts
        upload, project = UPLOAD, PROJECT
        db.AnnotationProject.insert_one({"_id": project, "contentUploads": []})
        db.AnnotationContentUpload.insert_one({"_id": upload, "projectId": project, "status": 0, "progress": 0})
        started = time.perf_counter()
        answer = post_node(f"http://127.0.0.1:{server.server_port}/api/processContent",
                           fields_for(upload, project, "./clip.mp4", auth_key=KEY, frame_rate=rate))
        assert answer.status_code == 202, answer.text
        while (doc := db.AnnotationContentUpload.find_one({"_id": upload}))["status"] == 0:
            if kill_one and killed is None:
                killed = kill_a_worker_mid_part(db, upload, workers)
            time.sleep(0.05 if kill_one and killed is None else 0.5)
        seconds = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
        server.shutdown()
        app.extensions["media"].close(grace=1)
    parts = list(db.ProcessingJob.find({"parent": f"content:{upload}"}))
    parent = db.ProcessingJob.find_one({"_id": f"content:{upload}"})
    phases = {}
    if parts:  # request to the first part's start (the probe and plan), the last part's end to status 1
        first = min(p["started_at"] for p in parts)
        phases = {"planning_s": round((first - parent["created_at"]).total_seconds(), 2),
                  "parts_s": round((max(p["finished_at"] for p in parts) - first).total_seconds(), 2),
                  "publishing_s": round((parent["finished_at"] - max(p["finished_at"] for p in parts))
                                        .total_seconds(), 2)}
    return {"run": name, "workers": len(cores), "seconds": round(seconds, 2), "status": doc["status"], **phases,
            "tasks": doc.get("taskCount"), "parts": len(parts), "parts_done": sum(p["state"] == "done" for p in parts),
            "killed_part_attempts": killed and db.ProcessingJob.find_one({"_id": killed})["attempts"],
            "documents": documents(db, upload)}


def kill_a_worker_mid_part(db, upload, workers) -> str | None:
    """SIGKILL the worker holding a part that has committed a task (None until there is one)."""
    for part in db.ProcessingJob.find({"parent": f"content:{upload}", "state": "running"}):
        checkpoint = part.get("checkpoint") or {}
        if checkpoint.get("next_task", 0) > part["params"]["part"]["first_task"] and part.get("lease_owner"):
            pid = int(part["lease_owner"].split(":")[1])
            victim = next((w for w in workers if w.pid == pid), None)
            if victim is not None:
                victim.send_signal(signal.SIGKILL)
                return part["_id"]
    return None


def documents(db, upload) -> dict:
    """The task and frame documents as Node reads them (ids, times and scratch paths aside)."""
    tasks = sorted(db.AnnotationTask.find({"uploadId": upload}), key=lambda t: t["frameStart"])
    ignored = {"_id", "uploadId", "projectId", "createdAt", "videoPath"}
    frames = {t["taskName"]: db.AnnotationFrame.count_documents({"taskId": t["_id"]}) for t in tasks}
    return {"tasks": [{k: v for k, v in t.items() if k not in ignored} for t in tasks], "frames": frames}


def differences(expected: dict, got: dict, most: int = 5) -> list[str]:
    """What differs between two runs' documents, a few lines of it."""
    found = [f"frames of {name}: {count} != {got['frames'].get(name)}" for name, count in expected["frames"].items()
             if got["frames"].get(name) != count]
    if len(expected["tasks"]) != len(got["tasks"]):
        found.append(f"{len(expected['tasks'])} tasks != {len(got['tasks'])}")
    for want, have in zip(expected["tasks"], got["tasks"]):
        found += [f"{want['taskName']}.{key}: {want.get(key)!r} != {have.get(key)!r}"
                  for key in sorted(set(want) | set(have)) if want.get(key) != have.get(key)]
    return found[:most]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=5)
    parser.add_argument("--tasks-per-part", type=int, default=1)
    parser.add_argument("--gop", type=int, default=60)
    parser.add_argument("--only", default="one-job,one,two,eight,tracks",
                        help="which runs (one-job, one, two, eight, tracks)")
    args = parser.parse_args()

    from media_service.embedded_mongo import EmbeddedMongo

    with tempfile.TemporaryDirectory(prefix="bench-parts-") as tmp:
        work = Path(tmp)
        make_clip(work / "clip.mp4", args.minutes, args.gop)
        mongod = EmbeddedMongo(work / "mongo", port=0)
        uri = mongod.start()
        try:
            results = {}
            runs = {"one-job": (0, [0], False), "one": (args.tasks_per_part, [0], False),
                    "two": (args.tasks_per_part, [0, 1], False), "eight": (args.tasks_per_part, [None] * 8, True)}
            for name in args.only.split(","):
                if name == "tracks":
                    print(json.dumps({"run": "tracks", **tracks_across_boundaries(work, uri, 1)}), flush=True)
                    continue
                per_part, cores, kill = runs[name]
                results[name] = run(work, uri, name, per_part, cores, args.rate, kill_one=kill)
                shown = {k: v for k, v in results[name].items() if k != "documents"}
                if "one-job" in results and name != "one-job":
                    same = results[name]["documents"] == results["one-job"]["documents"]
                    shown["same_documents_as_one_job"] = same
                    if not same:
                        shown["differences"] = differences(results["one-job"]["documents"],
                                                           results[name]["documents"])
                    shown["time_vs_one_job"] = round(results[name]["seconds"] / results["one-job"]["seconds"], 3)
                if "one" in results and name not in ("one", "one-job"):
                    shown["time_vs_one_worker"] = round(results[name]["seconds"] / results["one"]["seconds"], 3)
                print(json.dumps(shown), flush=True)
        finally:
            mongod.stop()



def tracks_across_boundaries(work: Path, uri: str, tasks_per_part: int) -> dict:
    """Real pedestrians (vtest.avi as an MP4 with a keyframe every 10 frames) auto-annotated at 5 fps
    in tasks of 20 frames, as one job and in parts of `tasks_per_part` tasks: at each part boundary,
    how many tracks show on both frames beside it with one id (one job: the tracker carries them;
    parts: the boundary linking must)."""
    from werkzeug.serving import make_server

    import mongo_manager
    from app import create_app
    from media_service.config import load_settings
    from tests.helpers import fields_for, post_node
    from tests.real_footage import real_clip_people

    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(real_clip_people()), "-c:v", "libx264", "-g", "10",
                    "-pix_fmt", "yuv420p", str(work / "people.mp4")], check=True)
    crossing = {}
    for name, per_part in (("tracks-one-job", 0), ("tracks-parts", tasks_per_part)):
        settings = load_settings({**env_for(work, uri, name, per_part), "CONTENT_FRAMES_PER_TASK": "20"})
        app = create_app(settings, start_workers=True)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        db = mongo_manager.connect(uri, name).db
        db.AnnotationProject.insert_one({"_id": PROJECT, "contentUploads": [], "labels": [{"label": "person"}]})
        db.AnnotationContentUpload.insert_one({"_id": UPLOAD, "projectId": PROJECT, "status": 0, "frames_per_task": 20})
        answer = post_node(f"http://127.0.0.1:{server.server_port}/api/processContent", fields_for(
            UPLOAD, PROJECT, "./people.mp4", auth_key=KEY, frame_rate=5, request_type=1, auto_anno_version=1))
        assert answer.status_code == 202, answer.text
        while db.AnnotationContentUpload.find_one({"_id": UPLOAD})["status"] == 0:
            time.sleep(0.5)
        tasks = sorted(db.AnnotationTask.find({"uploadId": UPLOAD}), key=lambda t: t["frameStart"])
        ends = []
        for before, after in zip(tasks, tasks[1:]):
            last = db.AnnotationFrame.find_one({"taskId": before["_id"], "frameId": before["frameCount"]})
            first = db.AnnotationFrame.find_one({"taskId": after["_id"], "frameId": 1})
            ends.append(({b["trackId"] for b in last["boxes"]}, {b["trackId"] for b in first["boxes"]}))
        crossing[name] = ends
        server.shutdown()
        app.extensions["media"].close(grace=1)
    boundaries = [i for i in range(len(crossing["tracks-parts"])) if (i + 1) % tasks_per_part == 0]
    kept = {name: sum(len(a & b) for i, (a, b) in enumerate(ends) if i in boundaries)
            for name, ends in crossing.items()}
    return {"part_boundaries": len(boundaries), "ids_kept_one_job": kept["tracks-one-job"],
            "ids_kept_parts": kept["tracks-parts"]}


if __name__ == "__main__":
    main()
