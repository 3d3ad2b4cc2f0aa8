"""MongoDB, one module a collection group; this module is the door the rest of the package uses.

`platform` holds the connection and the collections the Node platform owns or reads (`MongoManager`),
`job_store` the `ProcessingJob` collection (ours: the queue, leases and checkpoints), `clock` the
time every stored date is written with. The root file `mongo_manager.py` re-exports these names for
scripts and old callers; nothing inside the package imports it.
"""
from __future__ import annotations

# `clock` first: job_store.py reads `utcnow` from this module while it is still being imported.
from media_service.mongo.clock import utcnow
from media_service.mongo.job_store import Job, JobStore, LeaseLost, VideoBusy
from media_service.mongo.platform import (
    MongoManager,
    connect,
    deadline,
    either_form,
    is_slow_call,
    is_unavailable,
)

__all__ = ["utcnow", "Job", "JobStore", "LeaseLost", "VideoBusy", "MongoManager", "connect", "deadline",
           "either_form", "is_slow_call", "is_unavailable"]
