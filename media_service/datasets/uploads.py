"""Objects of a dataset build stored in the background (S3), so that the task threads go on
decoding and encoding while earlier objects upload: a pool of upload threads shared by the build's
tasks, at most `IN_FLIGHT` objects waiting or uploading at once (memory stays flat in the
version's size). Each task waits for its own objects before its frame docs and its `complete` are
written, so a task recorded complete has every object stored, and a crash in between leaves only
whole objects (a PutObject is atomic) that the next attempt of the same build does not store again.
Local storage writes in the calling thread (`Inline`): a file write is cheaper than a hand-over.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from media_service import metrics
from media_service.storage import LocalStorage

THREADS = 4      # 8 (boto3's transfer manager's default) cost 6 CPU-s more and 180 MB more peak RSS
IN_FLIGHT = 32   # objects handed over and not yet stored (about 32 x 100 KB at 720p)


class Inline:
    """Stores in the calling thread (local storage)."""

    def __init__(self, storage):
        self.storage = storage

    def put(self, key: str, data: bytes, content_type: str) -> Future | None:
        self.storage.put_bytes(key, data, content_type)
        return None

    def close(self) -> None:
        pass


class Background:
    """Stores on a pool of upload threads; `put` blocks while `IN_FLIGHT` objects are pending."""

    def __init__(self, storage, threads: int = THREADS, in_flight: int = IN_FLIGHT):
        self.storage = storage
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dataset-upload")
        self.room = threading.BoundedSemaphore(in_flight)

    def put(self, key: str, data: bytes, content_type: str) -> Future:
        self.room.acquire()
        try:
            return self.pool.submit(self._store, key, data, content_type)
        except BaseException:
            self.room.release()
            raise

    def _store(self, key: str, data: bytes, content_type: str) -> None:
        try:
            with metrics.cpu_stages("dataset"):  # the upload threads' CPU, as `upload`
                self.storage.put_bytes(key, data, content_type)
                metrics.lap("upload")
        finally:
            self.room.release()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def uploads_for(storage) -> Inline | Background:
    return Inline(storage) if isinstance(storage, LocalStorage) else Background(storage)


def wait_all(futures: list[Future | None]) -> None:
    """Wait for every object handed over; the first failure is raised (after all have ended, so
    that nothing of the task is still uploading when its failure is recorded)."""
    error = None
    for future in futures:
        if future is None:
            continue
        exc = future.exception()
        if exc is not None and error is None:
            error = exc
    futures.clear()
    if error is not None:
        raise error
