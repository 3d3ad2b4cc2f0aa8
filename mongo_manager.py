"""The door to MongoDB for scripts and old callers: the connection, Node's collections
(`MongoManager`, media_service/mongo/platform.py) and the job store (media_service/mongo/job_store.py).

The work lives in `media_service/mongo/`; the package's own modules import it from there, never
from this file.
"""
from __future__ import annotations

from media_service.mongo import (  # noqa: F401 - the door's names
    Job,
    JobStore,
    LeaseLost,
    MongoManager,
    VideoBusy,
    connect,
    deadline,
    either_form,
    is_slow_call,
    is_unavailable,
    utcnow,
)
