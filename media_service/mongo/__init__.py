"""MongoDB, one module a collection group; `mongo_manager` is the door the rest of the code uses.

`job_store` holds the `ProcessingJob` collection (ours: the queue, leases and checkpoints);
`mongo_manager` itself keeps the connection and the collections the Node platform owns or reads.
This module holds what they share.
"""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    # MongoDB stores milliseconds; truncating here keeps values equal after a round trip.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
