"""One start-up for every entry point (app.py, worker.py, dataset_processor.py,
dataset_creation_warm_start.py, gunicorn.conf.py): the settings, logging, the local key when
the service makes its own, then the services, and one exit code per cause of failure.

Exit codes, the same in every entry point (README.md):
  0   done
  1   the run failed (the reason is logged, and kept on the job)
  2   a bad command line or argument (argparse's own code for a usage error; an unknown id)
  3   nothing to do: already complete (dataset_processor.py)
  69  the database cannot be reached (EX_UNAVAILABLE in sysexits.h)
  78  a configuration error (EX_CONFIG in sysexits.h)
The last two are the BSD codes systemd names (`systemd-analyze exit-status`), clear of gunicorn's
own 3 (a worker failed to boot) and 4 (the application failed to load).
"""
from __future__ import annotations

import logging
import os
import secrets
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import NoReturn

from media_service.config import ConfigError, Settings, load_settings
from media_service.embedded_mongo import EmbeddedMongoError
from media_service.logging_setup import configure_logging
from media_service.mongo import is_unavailable
from media_service.services import Services

log = logging.getLogger("app")


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    BAD_ARGUMENT = 2
    ALREADY_COMPLETE = 3
    DATABASE_UNREACHABLE = 69
    CONFIGURATION = 78


@dataclass
class Started:
    settings: Settings
    services: Services | None
    key_source: str  # where the API key comes from: APP_API_KEY or the local key's file


def stop(code: ExitCode, message: str) -> NoReturn:
    """End the process with `code`, `message` on stderr."""
    print(message, file=sys.stderr)
    raise SystemExit(int(code))


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        stop(ExitCode.CONFIGURATION, f"configuration error: {exc}")


def configure(settings: Settings) -> None:
    configure_logging(settings.app.log_level, settings.secrets(), settings.app.log_format)


def services_or_exit(settings: Settings) -> Services:
    try:
        return Services.open(settings)
    except EmbeddedMongoError as exc:
        stop(ExitCode.DATABASE_UNREACHABLE, f"embedded MongoDB: {exc}")
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        stop(ExitCode.DATABASE_UNREACHABLE, f"the database cannot be reached: {exc}")


def bootstrap(*, local_key: bool = False, services: bool = True) -> Started:
    """Settings, logging, the local key (`local_key`: the embedded default, when no key is set), the
    services (`services`); a configuration error or an unreachable database ends the process with
    its exit code and a one-line message."""
    settings = settings_or_exit()
    configure(settings)
    key_source = "APP_API_KEY" if settings.app.api_keys else str(Path(settings.app.data_dir) / "api_key")
    if local_key:
        settings = ensure_local_api_key(settings)
    return Started(settings, services_or_exit(settings) if services else None, key_source)


def ensure_local_api_key(settings: Settings) -> Settings:
    """With no key configured, the embedded default makes one (in a file, never in the log)."""
    if settings.app.api_keys:
        return settings
    key_file = Path(settings.app.data_dir) / "api_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    log.warning("no APP_API_KEY set: using the key in %s (send it as auth_key)", key_file)
    return settings.replace(app={"api_keys": (key_file.read_text().strip(),)})
