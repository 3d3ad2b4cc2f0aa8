"""`worker.py` with a hold point, so a test meets a job exactly where it wants it (never by racing it).

Environment:
  HOLD_DIR      a folder; the worker writes `held` there when it stops and goes on once `release` exists
  HOLD_AT       the n-th checkpoint this process saves (1-based, all jobs together) to stop at, or
                `end`: the job's last look for a cancel before it publishes its end
                (JobContext.stop_if_cancel_requested)
  HOLD_WHEN     `before` (default: the checkpoint is not saved yet, the look not taken) or `after`
  HOLD_ON       `checkpoint` (default) or `progress`: count the job's progress reports instead
                (JobContext.progress: a batch of frames done, no resume point)

Run as `python -m tests.held_worker` from the repository root (HeldWorker does); everything else is
the real worker.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from media_service import jobs

ROOT = Path(__file__).resolve().parent.parent
_count = 0
_count_lock = threading.Lock()


def hold_here(folder: Path) -> None:
    (folder / "held").touch()
    while not (folder / "release").exists():
        time.sleep(0.01)


def install(folder: Path, at: str, when: str, on: str = "checkpoint") -> None:
    name = "stop_if_cancel_requested" if at == "end" else on
    real = getattr(jobs.JobContext, name)

    def held(self, *args, **kwargs):
        global _count
        with _count_lock:
            _count += 1
            mine = _count
        here = at == "end" or mine == int(at)
        if here and when == "before":
            hold_here(folder)
        real(self, *args, **kwargs)
        if here and when == "after":
            hold_here(folder)

    setattr(jobs.JobContext, name, held)


class HeldWorker:
    """A real worker process that stops at its `at`-th checkpoint (before or after saving it)."""

    def __init__(self, env: dict, folder: Path, at: int | str, when: str = "before", on: str = "checkpoint"):
        self.folder = folder
        folder.mkdir(parents=True)
        self.log = folder / "worker.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.held_worker"], cwd=ROOT, stdout=open(self.log, "a"), stderr=subprocess.STDOUT,
            env={**os.environ, **env, "HOLD_DIR": str(folder), "HOLD_AT": str(at), "HOLD_WHEN": when, "HOLD_ON": on})

    def wait_held(self, db, job_id: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not (self.folder / "held").exists():
            job = db.ProcessingJob.find_one({"_id": job_id}) or {}
            assert job.get("state") not in ("done", "failed", "cancelled"), f"ended before the hold point: {job}"
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"never held: {job}"
            time.sleep(0.02)

    def release(self) -> None:
        (self.folder / "release").touch()

    def stop(self) -> None:
        self.release()
        self.process.terminate()
        self.process.wait(60)


if __name__ == "__main__":
    install(Path(os.environ["HOLD_DIR"]), os.environ["HOLD_AT"], os.environ.get("HOLD_WHEN", "before"),
            os.environ.get("HOLD_ON", "checkpoint"))
    import worker
    worker.main()
