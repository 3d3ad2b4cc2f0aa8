"""Log format with the job in every line, and a filter that masks configured secrets."""
from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Iterable, Iterator

from media_service.redact import SecretMask

_current_job: contextvars.ContextVar[str] = contextvars.ContextVar("current_job", default="-")

FORMAT = "%(asctime)s %(levelname)s [%(job)s] %(name)s: %(message)s"


@contextlib.contextmanager
def job_context(label: str) -> Iterator[None]:
    """Every log line written inside names this job (e.g. `upload=6127d7b6...`)."""
    token = _current_job.set(label)
    try:
        yield
    finally:
        _current_job.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):  # set once, in the thread that logged it
            record.job = _current_job.get()
        return True


class _MaskingFormatter(logging.Formatter):
    """Masks secrets in the whole line as written, tracebacks included."""

    def __init__(self, fmt: str, secrets: Iterable[str]):
        super().__init__(fmt)
        self.mask = SecretMask(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.mask.text(super().format(record))


def configure_logging(level: str = "info", secrets: Iterable[str] = ()) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = _MaskingFormatter(FORMAT, secrets)
    for handler in root.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, _ContextFilter) for f in handler.filters):
            handler.addFilter(_ContextFilter())
