"""Decoding in a thread of its own, a few items ahead, so that it overlaps encoding."""
from __future__ import annotations

import contextvars
import queue
import threading
from typing import Iterator


class Prefetcher:
    """Runs an iterator in a thread with a small bounded queue, so decoding overlaps encoding."""

    _END = object()

    def __init__(self, iterator: Iterator, depth: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # Run in a copy of the caller's context so log lines keep the job's label.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run, iterator),
                                        name="decode", daemon=True)
        self._thread.start()

    def _run(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()

    def _put(self, item) -> bool:
        """Wait for room in the queue unless the consumer stopped; False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
