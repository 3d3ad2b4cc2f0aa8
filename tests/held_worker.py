"""`worker.py` with a hold point, so a test meets a job exactly where it wants it (never by racing it).

Environment:
  HOLD_DIR      a folder; at hold point n the worker writes `held-n` there and goes on once `release-n`
                exists
  HOLD_AT       the n-th checkpoint this process saves (1-based, all jobs together) to stop at, several
                comma-separated (`2,3`), or `end`: the job's last look for a cancel before it publishes
                its end (JobContext.stop_if_cancel_requested)
  HOLD_WHEN     `before` (default: the checkpoint is not saved yet, the look not taken) or `after`
  HOLD_ON       `checkpoint` (default); `progress`: count the job's progress reports instead
                (JobContext.progress: a batch of frames done, no resume point); `check`: its looks for a
                cancel (JobContext.check: a dataset build looks before each frame)

Run as `python -m tests.held_worker` from the repository root (HeldWorker does); everything else is
the real worker.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from media_service import worker_pool

ROOT = Path(__file__).resolve().parent.parent
_count = 0
_count_lock = threading.Lock()


def hold_here(folder: Path, point: str) -> None:
    """Stop this job's thread until the test releases it (HeldWorker.stop ends the process in any case)."""
    (folder / f"held-{point}").touch()
    while not (folder / f"release-{point}").exists():
        time.sleep(0.01)


def install(folder: Path, at: str, when: str, on: str = "checkpoint") -> None:
    name = "stop_if_cancel_requested" if at == "end" else on
    real = getattr(worker_pool.JobContext, name)
    points = at.split(",")

    def held(self, *args, **kwargs):
        global _count
        with _count_lock:
            _count += 1
            mine = _count
        point = "end" if at == "end" else str(mine) if str(mine) in points else None
        if point and when == "before":
            hold_here(folder, point)
        real(self, *args, **kwargs)
        if point and when == "after":
            hold_here(folder, point)

    setattr(worker_pool.JobContext, name, held)


class HeldWorker:
    """A real worker process that stops at its `at`-th checkpoint (before or after saving it); `at`
    may list several (`"2,3"`): the worker stops at each until that one is released."""

    def __init__(self, env: dict, folder: Path, at: int | str, when: str = "before", on: str = "checkpoint"):
        self.folder = folder
        self.points = str(at).split(",")
        folder.mkdir(parents=True)
        self.log = folder / "worker.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.held_worker"], cwd=ROOT, stdout=open(self.log, "a"), stderr=subprocess.STDOUT,
            env={**os.environ, **env, "HOLD_DIR": str(folder), "HOLD_AT": str(at), "HOLD_WHEN": when, "HOLD_ON": on})

    def wait_held(self, db, job_id: str, timeout: float = 300, at: int | str | None = None) -> None:
        """Until the worker stops at hold point `at` (by default the first); fails at once if the job
        ends or the worker dies first."""
        from tests.helpers import ENDED, wait_for  # the test's side only: the worker process stays lean

        point = str(at or self.points[0])

        def held() -> bool:
            job = db.ProcessingJob.find_one({"_id": job_id}) or {}
            assert job.get("state") not in ENDED, f"ended before hold point {point}: {job}"
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            return (self.folder / f"held-{point}").exists()

        wait_for(held, timeout, 0.02, lambda: f"{job_id} held at {point}: "
                                              f"{db.ProcessingJob.find_one({'_id': job_id})}")

    def release(self, at: int | str | None = None) -> None:
        """Let the worker go on from hold point `at` (by default from every one)."""
        for point in [str(at)] if at else self.points:
            (self.folder / f"release-{point}").touch()

    def kill(self) -> None:
        """kill -9 where it is held: its job's thread runs no further."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.release()
        self.process.terminate()
        self.process.wait(60)


def finish_with_another_worker(env: dict, log: Path, db, upload_id, timeout: float = 120) -> dict:
    """A fresh worker.py takes the upload over (once the killed one's lease runs out) and ends it;
    the upload's document, which must say done (status 1)."""
    from tests.helpers import wait_for_upload
    from tests.test_jobs import start_worker

    survivor = start_worker(env, log)
    try:
        upload = wait_for_upload(db, upload_id, timeout=timeout)
        assert upload["status"] == 1, upload
        return upload
    finally:
        survivor.terminate()
        survivor.wait(30)


if __name__ == "__main__":
    install(Path(os.environ["HOLD_DIR"]), os.environ["HOLD_AT"], os.environ.get("HOLD_WHEN", "before"),
            os.environ.get("HOLD_ON", "checkpoint"))
    import worker
    worker.main()
