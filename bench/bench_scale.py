"""Benchmark: the service on a MongoDB replica set, and many workers on one database (issue 21).

    .venv/bin/python -m bench.bench_scale [--jobs 200] [--workers 1,2,4] [--cycles 300]
                                          [--claim-jobs 3000] [--claimers 5x10]

Three parts, each against fresh databases, in one run:

1. What a replica set costs: `--cycles` job life cycles (enqueue, claim, checkpoint, finish: the
   writes every job makes, through the service's MongoManager, so `w: majority, j: true`) on one
   `mongod` and on a three-member replica set of the same binary, one after the other.
2. Many workers: for each count in `--workers`, that many `worker.py` processes on the replica set
   (default threads each), then `--jobs` small image-folder uploads queued through the real
   `POST /api/processContent`; jobs per second (first claim to last finish) and claim latency
   (queued to claimed, p50/p99, from the job documents), and exactly-once checked: every upload
   done in one attempt with exactly its tasks, each with its frames, nothing twice.
3. The claim path alone: `--claim-jobs` jobs of a kind that does nothing, claimed and finished by
   1 thread in 1 process and then by PxT threads in P processes (`--claimers`), straight through
   MongoManager.claim_next_job / finish_job; claims per second, claim call p50/p99, and the CPU
   seconds the claimers and the mongod processes used. Also the claim query's plan.

Prints one JSON document; bench/README.md keeps the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- 1. a job's writes: one server against a replica set -------------------------------------------

def life_cycles(uri: str, cycles: int) -> dict:
    import mongo_manager

    mongo = mongo_manager.connect(uri, "bench_cycles")
    mongo.client.drop_database("bench_cycles")
    mongo.ensure_indexes()
    timings = []
    started = time.perf_counter()
    for number in range(cycles):
        began = time.perf_counter()
        mongo.jobs.enqueue(f"noop:{number}", "noop", str(number), {}, 3)
        job = mongo.jobs.claim("bench", 60, ["noop"])
        mongo.jobs.save_checkpoint(job.id, "bench", {"next_task": 1}, "tasks", 50.0)
        mongo.jobs.finish(job.id, "bench", "done")
        timings.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - started
    concern = mongo.db.write_concern.document
    mongo.client.drop_database("bench_cycles")
    mongo.close()
    return {"cycles": cycles, "seconds": round(elapsed, 2), "cycles_per_second": round(cycles / elapsed, 1),
            "cycle_ms_p50": round(percentile(timings, 50) * 1000, 2),
            "cycle_ms_p99": round(percentile(timings, 99) * 1000, 2), "write_concern": concern}


# -- 2. worker.py processes on one replica set ----------------------------------------------------

def make_folders(content: Path, count: int, images: int) -> None:
    import cv2
    import numpy as np

    for number in range(count):
        folder = content / "uploads" / f"set{number:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for image in range(images):
            picture = np.full((120, 160, 3), (number * 7 + image * 40) % 256, np.uint8)
            cv2.putText(picture, str(image), (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
            cv2.imwrite(str(folder / f"img{image}.jpg"), picture)


def many_workers(uri: str, work: Path, workers: int, jobs: int, images: int) -> dict:
    from werkzeug.serving import make_server

    from app import create_app
    from media_service.config import load_settings
    from tests.helpers import fields_for, new_upload, post_node

    db_name = f"bench_workers_{workers}"
    env = {**os.environ, "MONGO_URI": uri, "MONGODB_DB_NAME": db_name, "APP_API_KEY": "bench-key-1",
           "STORAGE_URL": str(work / f"storage{workers}"), "FOLDERS_CONTENT_BASE": str(work / "content"),
           "FOLDERS_CONTENT_PATH_BASE": str(work / "content"), "FOLDERS_TASK_BASE": str(work / "tasks"),
           "APP_DATA_DIR": str(work / "data"), "APP_RUN_WORKERS": "false"}
    settings = load_settings(env)
    app = create_app(settings)
    mongo = app.extensions["media"].mongo
    mongo.client.drop_database(db_name)
    mongo.ensure_indexes()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    processes = [subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(work / f"worker{workers}-{i}.log", "w")) for i in range(workers)]
    try:
        time.sleep(8)  # imports and start-up, so that the figures are the running workers'
        uploads = []
        for number in range(jobs):
            upload_id, project_id = new_upload(mongo.db, f"./uploads/set{number:04d}", content_type=2,
                                               frames_per_task=images)
            fields = {**fields_for(upload_id, project_id, f"./uploads/set{number:04d}"), "auth_key": "bench-key-1",
                      "content_type": "2"}
            answer = post_node(f"http://127.0.0.1:{server.server_port}/api/processContent", fields)
            assert answer.status_code == 202, answer.text
            uploads.append(upload_id)
        deadline = time.monotonic() + 1800
        while mongo.db.ProcessingJob.count_documents({"state": {"$in": ["done", "failed", "cancelled"]}}) < jobs:
            assert time.monotonic() < deadline, "jobs did not end"
            time.sleep(0.5)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        server.shutdown()
    found = list(mongo.db.ProcessingJob.find())
    latency = [(job["started_at"] - job["created_at"]).total_seconds() for job in found]
    first = min(job["started_at"] for job in found)
    last = max(job["finished_at"] for job in found)
    # Exactly once: each upload done in one attempt, with its one task, that task with its frames.
    problems = [job["_id"] for job in found if job["state"] != "done" or job["attempts"] != 1]
    for upload_id in uploads:
        tasks = list(mongo.db.AnnotationTask.find({"uploadId": upload_id}, {"_id": 1}))
        frames = mongo.db.AnnotationFrame.count_documents({"taskId": {"$in": [t["_id"] for t in tasks]}})
        if len(tasks) != 1 or frames != images:
            problems.append(f"{upload_id}: {len(tasks)} tasks, {frames} frames")
    duplicates = list(mongo.db.AnnotationFrame.aggregate([
        {"$group": {"_id": {"task": "$taskId", "frame": "$frameId"}, "n": {"$sum": 1}}},
        {"$match": {"n": {"$gt": 1}}}]))
    result = {"workers": workers, "threads_each": settings.cores.worker_threads, "jobs": jobs,
              "seconds": round((last - first).total_seconds(), 2),
              "jobs_per_second": round(jobs / (last - first).total_seconds(), 2),
              "claim_latency_p50_s": round(percentile(latency, 50), 3),
              "claim_latency_p99_s": round(percentile(latency, 99), 3),
              "frames_written": mongo.db.AnnotationFrame.count_documents({}),
              "exactly_once": not problems and not duplicates, "problems": problems[:5] + duplicates[:5]}
    mongo.client.drop_database(db_name)
    app.extensions["media"].close(grace=1)
    return result


# -- 3. the claim path by itself -------------------------------------------------------------------

def claimer(uri: str, db_name: str, threads: int) -> dict:
    """In its own process: `threads` threads claim and finish `noop` jobs until none is left."""
    import mongo_manager

    mongo = mongo_manager.connect(uri, db_name)
    mongo.ping()
    timings: list[float] = []
    lock = threading.Lock()

    def loop(index: int) -> None:
        owner, mine = f"{os.getpid()}:{index}", []
        while True:
            began = time.perf_counter()
            job = mongo.jobs.claim(owner, 60, ["noop"])
            mine.append(time.perf_counter() - began)
            if job is None:
                break
            mongo.jobs.finish(job.id, owner, "done")
        with lock:
            timings.extend(mine[:-1])

    started = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"claims": len(timings), "seconds": time.perf_counter() - started, "timings": timings,
            "cpu_seconds": time.process_time()}


def claim_path(uri: str, processes: int, threads: int, jobs: int, mongod_pids: list[int],
               proposed_index: bool = False) -> dict:
    import mongo_manager

    db_name = "bench_claims"
    mongo = mongo_manager.connect(uri, db_name)
    mongo.client.drop_database(db_name)
    mongo.ensure_indexes()
    if proposed_index:  # see claim_plan: the cancel_requested branch then reads one key, not the queue
        mongo.db.ProcessingJob.create_index([("state", 1), ("cancel_requested", 1), ("created_at", 1)])
    for number in range(jobs):
        mongo.jobs.enqueue(f"noop:{number}", "noop", str(number), {}, 3)
    before = sum(cpu_seconds(pid) for pid in mongod_pids)
    started = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-m", "bench.bench_scale", "--claimer", uri, db_name, str(threads)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    answers = [json.loads(child.communicate()[0]) for child in children]
    elapsed = time.perf_counter() - started
    mongod_cpu = sum(cpu_seconds(pid) for pid in mongod_pids) - before
    timings = [t for answer in answers for t in answer["timings"]]
    claimed = sum(answer["claims"] for answer in answers)
    twice = jobs - mongo.db.ProcessingJob.count_documents({"state": "done", "attempts": 1})
    mongo.client.drop_database(db_name)
    mongo.close()
    return {"processes": processes, "threads_each": threads, "proposed_index": proposed_index, "jobs": jobs,
            "claimed": claimed,
            "not_exactly_once": twice, "seconds": round(elapsed, 2), "claims_per_second": round(claimed / elapsed, 1),
            "claim_ms_p50": round(percentile(timings, 50) * 1000, 2),
            "claim_ms_p99": round(percentile(timings, 99) * 1000, 2),
            "claimers_cpu_s": round(sum(answer["cpu_seconds"] for answer in answers), 1),
            "mongod_cpu_s": round(mongod_cpu, 1)}


def claim_plan(uri: str) -> dict:
    """How the server runs the claim's query with the service's indexes (explain, executionStats)."""
    import mongo_manager
    from mongo_manager import utcnow

    mongo = mongo_manager.connect(uri, "bench_plan")
    mongo.client.drop_database("bench_plan")
    mongo.ensure_indexes()
    for number in range(2000):
        mongo.jobs.enqueue(f"noop:{number}", "noop", str(number), {}, 3)
    mongo.db.ProcessingJob.update_many({"_id": {"$in": [f"noop:{n}" for n in range(1000)]}},
                                       {"$set": {"state": "done"}})
    now = utcnow()
    query = {"kind": {"$in": ["noop"]}, "$or": [{"state": "queued", "not_before": {"$lte": now}},
                                                 {"state": "queued", "cancel_requested": True},
                                                 {"state": "running", "lease_expires": {"$lt": now}}]}

    def explain() -> dict:
        return mongo.db.command("explain", {"find": "ProcessingJob", "filter": query, "sort": {"created_at": 1},
                                            "limit": 1}, verbosity="executionStats")

    explained = explain()
    # The same query with one more index, for the cancel_requested branch (a proposal, not the service's).
    mongo.db.ProcessingJob.create_index([("state", 1), ("cancel_requested", 1), ("created_at", 1)])
    proposed = explain()["executionStats"]
    stats = explained["executionStats"]
    mongo.client.drop_database("bench_plan")
    mongo.close()

    def stages(plan: dict) -> list[str]:
        found = [plan["stage"] + (f"({plan['indexName']})" if "indexName" in plan else "")]
        for key in ("inputStage",):
            if key in plan:
                found += stages(plan[key])
        for child in plan.get("inputStages", []):
            found += stages(child)
        return found

    return {"jobs": 2000, "done": 1000, "winning_plan": stages(explained["queryPlanner"]["winningPlan"]),
            "keys_examined": stats["totalKeysExamined"], "docs_examined": stats["totalDocsExamined"],
            "with_state_cancel_created_index": {"keys_examined": proposed["totalKeysExamined"],
                                                "docs_examined": proposed["totalDocsExamined"]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--claim-jobs", type=int, default=3000)
    parser.add_argument("--claimers", default="5x10")
    parser.add_argument("--parts", default="writes,plan,claims,workers",
                        help="which parts to run (writes, plan, claims, workers)")
    parser.add_argument("--proposed-index", action="store_true",
                        help="claims: with the (state, cancel_requested, created_at) index the plan proposes")
    parser.add_argument("--claimer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.claimer:
        print(json.dumps(claimer(args.claimer[0], args.claimer[1], int(args.claimer[2]))))
        return

    from media_service.embedded_mongo import EmbeddedMongo
    from tests.replica_set import ReplicaSet

    report: dict = {"date": time.strftime("%Y-%m-%d"), "load_before": os.getloadavg(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        single = EmbeddedMongo(work / "single", port=0)
        members = ReplicaSet(work / "replica-set")
        try:
            parts = args.parts.split(",")
            replica_uri = members.start()
            if "writes" in parts:
                single_uri = single.start()
                report["writes_single_server"] = life_cycles(single_uri, args.cycles)
                report["writes_replica_set"] = life_cycles(replica_uri, args.cycles)
                single.stop()
            if "plan" in parts:
                report["claim_plan"] = claim_plan(replica_uri)
            mongod_pids = [process.pid for process in members.processes]
            processes, threads = (int(n) for n in args.claimers.split("x"))
            if "claims" in parts:
                report["claim_path"] = [
                    claim_path(replica_uri, 1, 1, args.claim_jobs, mongod_pids, args.proposed_index),
                    claim_path(replica_uri, processes, threads, args.claim_jobs, mongod_pids, args.proposed_index)]
            if "workers" in parts:
                make_folders(work / "content", args.jobs, args.images)
                report["workers"] = []
            for count in (int(n) for n in args.workers.split(",") if "workers" in parts):
                mongod_before = sum(cpu_seconds(pid) for pid in mongod_pids)
                row = many_workers(replica_uri, work, count, args.jobs, args.images)
                row["mongod_cpu_s"] = round(sum(cpu_seconds(pid) for pid in mongod_pids) - mongod_before, 1)
                report["workers"].append(row)
                print(json.dumps(row), file=sys.stderr)
        finally:
            single.stop()
            members.stop()
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
