"""Log format with the job in every line, and a filter that masks configured secrets."""
from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Iterable, Iterator

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
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):  # set once, in the thread that logged it
            record.job = _current_job.get()
        if self.secrets:
            message = record.getMessage()
            masked = message
            for secret in self.secrets:
                masked = masked.replace(secret, "***")
            if masked != message:
                record.msg, record.args = masked, None
        return True


def configure_logging(level: str = "info", secrets: Iterable[str] = ()) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    context_filter = _ContextFilter(secrets)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        for old in [f for f in handler.filters if isinstance(f, _ContextFilter)]:
            handler.removeFilter(old)
        handler.addFilter(context_filter)
