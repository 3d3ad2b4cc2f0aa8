"""Shared-key checks for the routes, and a limit on wrong keys per client address.

The limit is our own small sliding window in memory (no new dependency, and nothing to add to the
database on every wrong key): each process counts on its own, so with gunicorn's N web workers a
client may send up to N times the limit before every worker refuses it.
"""
from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections import deque

from flask import current_app
from werkzeug.exceptions import TooManyRequests

from media_service.web.client import current_client

log = logging.getLogger(__name__)

MAX_ADDRESSES = 10_000  # addresses remembered at once: a flood from many addresses stays bounded


def key_matches(given: str, configured: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    given_bytes = given.encode()
    matched = False
    for key in configured:
        matched |= hmac.compare_digest(given_bytes, key.encode())
    return matched


class FailedKeys:
    """Wrong keys per client address over a sliding window: after `limit` wrong keys within
    `window` seconds, its next wrong keys are refused (429) until fewer than `limit` of them lie
    within the window. Right keys are never counted nor refused."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}
        self._logged_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def failed(self, address: str, now: float | None = None) -> float | None:
        """Count a wrong key from `address`: the seconds it must wait when over the limit, else None."""
        if self.limit <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                self._forget(now)
                times = self._failures[address] = deque(maxlen=self.limit)
            while times and times[0] <= now - self.window:
                times.popleft()
            over = len(times) >= self.limit
            times.append(now)  # a refused try counts too: a client that keeps trying stays refused
            if not over:
                return None
            wait = times[0] + self.window - now
            if self._logged_until.get(address, -math.inf) <= now:  # once a window, not once a request
                self._logged_until[address] = now + self.window
                log.warning("more than %d wrong keys from %s within %.0f s: its wrong keys answer 429 "
                            "(a right key still works)", self.limit, address, self.window)
            return wait

    def _forget(self, now: float) -> None:
        """Drop addresses with no wrong key in the window; past MAX_ADDRESSES, the oldest."""
        if len(self._failures) < MAX_ADDRESSES:
            return
        for address in [a for a, times in self._failures.items() if not times or times[-1] <= now - self.window]:
            del self._failures[address]
            self._logged_until.pop(address, None)
        while len(self._failures) >= MAX_ADDRESSES:
            address = next(iter(self._failures))
            del self._failures[address]
            self._logged_until.pop(address, None)


def count_wrong_key() -> None:
    """A request sent a wrong key: count it for its client, and answer 429 with Retry-After
    (JSON, as every error) when that client has sent too many."""
    limiter: FailedKeys | None = current_app.extensions.get("failed_keys")
    if limiter is None:
        return
    wait = limiter.failed(current_client().address)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(f"too many wrong keys from this address; try again in {seconds} s",
                              retry_after=seconds)
