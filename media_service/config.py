"""Typed settings: `config.cfg` (INI), an optional secrets file, then environment variables.

One rule for overrides: `<SECTION>_<KEY>` in upper case (`APP_API_KEY`,
`CONTENT_FRAMES_PER_TASK`), plus a few well-known names that stand alone (`MONGO_URI`,
`STORAGE_URL`, `PORT`). Values are parsed and checked at
start-up; a bad one raises `ConfigError` naming the key. Secrets may never sit in the
committed file, and `Settings.__repr__` never shows them.
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]  # the project folder, where config.cfg lives
DEFAULT_CONFIG_FILE = ROOT / "config.cfg"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key and the variable."""


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value
    return parse


def _float(minimum: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if value != value or (minimum is not None and value < minimum):
            raise ValueError(f"must be a number >= {minimum}")
        return value
    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value
    return parse


def _text(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class Option:
    section: str
    key: str
    attr: str
    parse: Callable[[str], Any]
    default: str
    secret: bool = False
    env_alias: str | tuple[str, ...] | None = None  # well-known variable names that also set it

    @property
    def env_name(self) -> str:
        return f"{self.section}_{self.key}".upper()


OPTIONS: tuple[Option, ...] = (
    Option("MongoDB", "uri", "mongo_uri", _text, "", secret=True, env_alias="MONGO_URI"),
    Option("MongoDB", "db_name", "mongo_db_name", _text, "annotation_platform"),
    Option("MongoDB", "host", "mongo_host", _text, "127.0.0.1"),
    Option("MongoDB", "port", "mongo_port", _int(1, 65535), "27017"),
    Option("MongoDB", "user_name", "mongo_user_name", _text, ""),
    Option("MongoDB", "password", "mongo_password", _text, "", secret=True),
    Option("MongoDB", "embedded_port", "embedded_mongo_port", _int(0, 65535), "0"),
    Option("IP", "server_ip", "server_ip", _text, "0.0.0.0"),
    Option("IP", "port", "port", _int(1, 65535), "8081", env_alias="PORT"),
    Option("S3", "region", "s3_region", _text, "us-east-1"),
    Option("S3", "access_key_id", "s3_access_key_id", _text, "", secret=True),
    Option("S3", "secret_access_key", "s3_secret_access_key", _text, "", secret=True),
    Option("S3", "endpoint_url", "s3_endpoint_url", _text, ""),
    Option("S3", "upload_attempts", "s3_upload_attempts", _int(1, 20), "5"),
    Option("Storage", "url", "storage_url", _text, "./data/storage", env_alias="STORAGE_URL"),
    Option("App", "API_key", "api_keys", _list, "", secret=True),
    Option("App", "data_dir", "data_dir", _text, "./data"),
    Option("App", "log_level", "log_level", _choice("debug", "info", "warning", "error"), "info"),
    Option("App", "max_request_bytes", "max_request_bytes", _int(1024), "1048576"),
    Option("App", "run_workers", "run_workers", _bool, "true"),
    Option("Content", "allowed_extensions", "allowed_extensions", _list,
           "mp4,mov,avi,mkv,webm,m4v,mpg,mpeg,wmv,flv,3gp,ts"),
    Option("Content", "image_extensions", "image_extensions", _list,
           "jpg,jpeg,png,bmp,webp,tif,tiff"),
    Option("Content", "frames_per_task", "frames_per_task", _int(1, 10000), "120"),
    Option("Content", "max_width", "max_width", _int(16), "7680"),
    Option("Content", "max_height", "max_height", _int(16), "4320"),
    Option("Content", "task_max_height", "task_max_height", _int(0), "0"),
    Option("Content", "sampling_mode", "sampling_mode", _choice("timestamp", "legacy"), "timestamp"),
    Option("Content", "x264_preset", "x264_preset",
           _choice("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"), "veryfast"),
    Option("Content", "x264_crf", "x264_crf", _int(0, 51), "23"),
    Option("Content", "delete_source", "delete_source", _bool, "false"),
    Option("Folders", "content_base", "content_base", _text, "."),
    Option("Folders", "task_base", "task_base", _text, "./data/tasks"),
    Option("Cores", "cpu_cores", "worker_threads", _int(1, 64), "2"),
    Option("Jobs", "lease_seconds", "lease_seconds", _float(2.0), "60"),
    Option("Jobs", "heartbeat_seconds", "heartbeat_seconds", _float(0.2), "10"),
    Option("Jobs", "poll_seconds", "poll_seconds", _float(0.05), "1"),
    Option("Jobs", "max_attempts", "max_attempts", _int(1, 100), "3"),
    Option("Jobs", "retry_backoff_seconds", "retry_backoff_seconds", _float(0), "30"),
    Option("Jobs", "shutdown_grace_seconds", "shutdown_grace_seconds", _float(0), "30"),
    Option("Jobs", "worker_nice", "worker_nice", _int(0, 19), "10"),
    Option("Privacy", "enabled", "privacy_enabled", _bool, "true"),
    Option("Privacy", "input_dir", "privacy_input_dir", _text, "./data/privacy",
           env_alias=("PRIVACYPAL_VIDEO_DIRECTORY", "PRIVACYPAL_INPUT_VIDEO_DIR")),
    Option("Privacy", "output_dir", "privacy_output_dir", _text, "", env_alias="PRIVACYPAL_OUTPUT_VIDEO_DIR"),
    Option("Privacy", "extensions", "privacy_extensions", _list, "mp4,mov,m4v,mkv"),
    Option("Privacy", "api_key", "privacy_api_keys", _list, "", secret=True),
    Option("Privacy", "require_key", "privacy_require_key", _bool, "false"),
    Option("Privacy", "detector", "privacy_detector", _choice("centerface", "rekognition"), "centerface"),
    Option("Privacy", "rekognition_endpoint_url", "privacy_rekognition_endpoint_url", _text, ""),
    Option("Privacy", "threshold", "privacy_threshold", _float(0.01), "0.2"),
    Option("Privacy", "detect_every", "privacy_detect_every", _int(1, 30), "2"),
    Option("Privacy", "detect_width", "privacy_detect_width", _int(0), "960"),
    Option("Privacy", "hold_frames", "privacy_hold_frames", _int(0, 60), "3"),
    Option("Privacy", "pad", "privacy_pad", _float(1.0), "1.3"),
    Option("Privacy", "blur_mode", "privacy_blur_mode", _choice("ellipse", "box", "mosaic", "fill"), "ellipse"),
    Option("Privacy", "blur_cells", "privacy_blur_cells", _int(2, 64), "8"),
    Option("Privacy", "fail_closed", "privacy_fail_closed", _choice("blur_frame", "fail_job"), "blur_frame"),
    Option("Privacy", "detector_threads", "privacy_detector_threads", _int(1, 64), "2"),
    Option("Privacy", "x264_crf", "privacy_x264_crf", _int(0, 51), "20"),
)


@dataclass(frozen=True)
class Settings:
    values: dict[str, Any] = field(repr=False)
    secret_attrs: frozenset[str] = field(repr=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        shown = {k: ("***" if k in self.secret_attrs and v else v) for k, v in self.values.items()}
        return f"Settings({shown})"

    def replace(self, **changes: Any) -> "Settings":
        unknown = set(changes) - set(self.values)
        if unknown:
            raise ConfigError(f"unknown settings: {sorted(unknown)}")
        return Settings({**self.values, **changes}, self.secret_attrs)

    def path(self, attr: str) -> Path:
        """A configured folder, relative paths taken from the working directory."""
        return Path(self.values[attr]).expanduser().resolve()

    def secrets(self) -> list[str]:
        """Every secret value set, so log filters can mask them."""
        found: list[str] = []
        for attr in self.secret_attrs:
            value = self.values[attr]
            found.extend(value if isinstance(value, tuple) else [value])
        return [s for s in found if s]


def _read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep `API_key` as operators write it
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"configuration file {path} is not valid INI: {exc}") from None
    return parser


def _lookup(parser: configparser.ConfigParser, option: Option) -> str | None:
    if not parser.has_section(option.section):
        return None
    for key, value in parser.items(option.section):
        if key.lower() == option.key.lower():
            return value
    return None


def load_settings(env: dict[str, str] | None = None, config_file: str | Path | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    config_path = Path(config_file or env.get("CONFIG_FILE") or DEFAULT_CONFIG_FILE)
    committed = _read_ini(config_path)
    secrets_file = env.get("CONFIG_SECRETS_FILE")
    private = _read_ini(Path(secrets_file)) if secrets_file else configparser.ConfigParser()

    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = option.default
        source = "default"
        from_file = _lookup(committed, option)
        if from_file is not None and from_file.strip():
            if option.secret:
                raise ConfigError(
                    f"[{option.section}] {option.key} is a secret and must not be set in {config_path.name}; "
                    f"set the environment variable {option.env_name} or put it in CONFIG_SECRETS_FILE")
            raw, source = from_file, f"[{option.section}] {option.key} in {config_path.name}"
        from_private = _lookup(private, option)
        if from_private is not None:
            raw, source = from_private, f"[{option.section}] {option.key} in CONFIG_SECRETS_FILE"
        aliases = (option.env_alias,) if isinstance(option.env_alias, str) else option.env_alias or ()
        for name in (option.env_name, *aliases):  # later names win: the old service's most specific
            if name and name in env:
                raw, source = env[name], f"environment variable {name}"
        try:
            values[option.attr] = option.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if option.secret else repr(raw)
            raise ConfigError(f"invalid value {shown} for [{option.section}] {option.key} "
                              f"(from {source}): {exc}") from None
    _check_consistency(values)
    return Settings(values, frozenset(o.attr for o in OPTIONS if o.secret))


def _check_consistency(values: dict[str, Any]) -> None:
    if values["heartbeat_seconds"] >= values["lease_seconds"]:
        raise ConfigError("[Jobs] heartbeat_seconds must be shorter than [Jobs] lease_seconds")
    url = values["storage_url"]
    if url.startswith("s3://") and not url[5:].split("/", 1)[0]:
        raise ConfigError("[Storage] url (STORAGE_URL) s3:// needs a bucket name, e.g. s3://my-bucket/prefix")
    if not url:
        raise ConfigError("[Storage] url (STORAGE_URL) must not be empty")
    if values["privacy_enabled"] and values["privacy_require_key"] and not values["privacy_api_keys"]:
        raise ConfigError("[Privacy] require_key is on but no key is set: set PRIVACY_API_KEY")
