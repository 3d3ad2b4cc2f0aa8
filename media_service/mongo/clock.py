"""MongoDB's clock: the time every stored date is written with."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    # MongoDB stores milliseconds; truncating here keeps values equal after a round trip.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
