"""Logging: plain text for a person at a terminal (the default), or one JSON object per line for a
log pipeline (`[App] log_format = json`). Every line written while a job runs carries the job: its
label in text, and `job_id`, `kind`, `stage` and the upload, version or file it is about in JSON.
Secrets never reach a line: configured secrets are masked in any encoding, and so are the
signatures of presigned URLs.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from datetime import datetime, timezone
from typing import Iterable, Iterator

from media_service.redact import MASK, SecretMask

_current_job: contextvars.ContextVar[str] = contextvars.ContextVar("current_job", default="-")
_current_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar("current_fields", default=None)

FORMAT = "%(asctime)s %(levelname)s [%(job)s] %(name)s: %(message)s"
_SIGNATURE = re.compile(r"((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature)=)[^&\s\"'<>]+")


@contextlib.contextmanager
def job_context(label: str, **fields: str) -> Iterator[None]:
    """Every log line written inside names this job (e.g. `upload=6127d7b6...`) and, in JSON, carries
    `fields` (job_id, kind, upload_id...); `set_log_fields` adds to them as the job goes."""
    label_token = _current_job.set(label)
    fields_token = _current_fields.set({**(_current_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _current_fields.reset(fields_token)
        _current_job.reset(label_token)


def set_log_fields(**fields: str | None) -> None:
    """Change fields of the current job's lines (the stage, as it moves on)."""
    current = _current_fields.get()
    if current is not None:
        current.update(fields)  # shared with the job's helper threads (their contexts are copies)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):  # set once, in the thread that logged it
            record.job = _current_job.get()
            record.fields = dict(_current_fields.get() or {})
        return True


class _Masking:
    def __init__(self, secrets: Iterable[str]):
        self.mask = SecretMask(secrets)

    def clean(self, text: str) -> str:
        return _SIGNATURE.sub(rf"\1{MASK}", self.mask.text(text))


class _TextFormatter(logging.Formatter):
    """Masks secrets in the whole line as written, tracebacks included."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__(FORMAT)
        self.masking = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.masking.clean(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the job's fields, the traceback."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.masking = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name,
                "message": self.masking.clean(record.getMessage())}
        fields = getattr(record, "fields", None) or {}
        line.update({k: self.masking.clean(str(v)) for k, v in fields.items() if v is not None})
        if record.exc_info:
            line["exception"] = self.masking.clean(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str = "info", secrets: Iterable[str] = (), log_format: str = "text") -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    secrets = list(secrets)
    formatter = _JsonFormatter(secrets) if log_format == "json" else _TextFormatter(secrets)
    for handler in root.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, _ContextFilter) for f in handler.filters):
            handler.addFilter(_ContextFilter())
