"""The long-lived parts one process needs: settings, MongoDB, storage and the worker pool."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from media_service import embedded_mongo, metrics
from media_service.annotation.handler import AnnotationJobHandler, annotator_factory
from media_service.config import Settings, mongo_uri_for
from media_service.content.handler import ContentJobHandler, ContentPartHandler
from media_service.content.retention import TryItSweeper
from media_service.datasets.handler import DatasetJobHandler
from media_service.embedded_mongo import EmbeddedMongo
from media_service.mongo import MongoManager, connect
from media_service.privacy.handler import PrivacyJobHandler
from media_service.redact import Redactor
from media_service.storage import open_storage
from media_service.worker_pool import WorkerPool

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    mongo: MongoManager
    storage: object
    embedded: EmbeddedMongo | None = None
    pool: WorkerPool | None = None
    sweeper: TryItSweeper | None = None  # the try-it form's retention, beside the worker pool
    extra_handlers: list = field(default_factory=list)
    redact: Redactor = field(init=False)  # secrets and server paths out of answers and stored errors

    def __post_init__(self) -> None:
        self.redact = Redactor.from_settings(self.settings)

    @classmethod
    def open(cls, settings) -> "Services":
        for notice in settings.notices:  # about the configuration files: once, at start-up
            log.warning("configuration: %s", notice)
        metrics.setup(settings)
        uri = mongo_uri_for(settings)
        embedded = None
        if uri is None:
            embedded = embedded_mongo.from_settings(settings)
            uri = embedded.start()
        else:
            log.info("using MongoDB at %s", _without_credentials(uri))
        mongo = connect(uri, settings.mongodb.db_name, int(settings.mongodb.timeout_seconds * 1000))
        try:
            mongo.ensure_indexes()
        except BaseException:
            mongo.close()
            if embedded:
                embedded.stop()
            raise
        storage = open_storage(settings)
        log.info("storage: %s", storage.description)
        return cls(settings, mongo, storage, embedded)

    def handlers(self) -> list:
        # Request type 1 is cut by the content job with the annotation feature's annotator.
        annotators = annotator_factory(self.mongo, self.settings)
        handlers = [ContentJobHandler(self.mongo, self.storage, self.settings, annotators),
                    ContentPartHandler(self.mongo, self.storage, self.settings, annotators),
                    AnnotationJobHandler(self.mongo, self.storage, self.settings),
                    DatasetJobHandler(self.mongo, self.storage, self.settings), *self.extra_handlers]
        if self.settings.privacy.enabled:
            handlers.append(PrivacyJobHandler(self.mongo, self.settings))
        return handlers

    def start_workers(self, threads: int | None = None) -> WorkerPool:
        self.pool = WorkerPool(self.mongo, self.settings, self.handlers(), threads)
        self.pool.start()
        if self.settings.jobs.try_it_retention_hours > 0:
            self.sweeper = TryItSweeper(self.mongo, self.storage, self.settings)
            self.sweeper.start()
        return self.pool

    def notify_workers(self) -> None:
        if self.pool:
            self.pool.notify()

    def close(self, grace: float | None = None) -> None:
        if self.sweeper:
            self.sweeper.stop()
        if self.pool:
            self.pool.shutdown(grace)
        self.mongo.close()
        if self.embedded:
            self.embedded.stop()


def _without_credentials(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}***@{rest.split('@', 1)[1]}" if "@" in rest else uri
