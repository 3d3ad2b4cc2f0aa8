"""Typed settings: `config.cfg` (INI), an optional secrets file, then environment variables.

One rule for overrides: `<SECTION>_<KEY>` in upper case (`APP_API_KEY`,
`CONTENT_FRAMES_PER_TASK`), plus a few well-known names that stand alone (`MONGO_URI`,
`STORAGE_URL`, `PORT`). Values are parsed and checked at
start-up; a bad one raises `ConfigError` naming the key. Secrets may never sit in the
committed file, and `Settings.__repr__` never shows them.

`Settings` holds one frozen dataclass per section (`config_sections.py`): `settings.content`,
`settings.privacy`, ...; a feature is given the sections it reads.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from media_service import legacy_config
from media_service.config_options import ConfigError, Option, Section
from media_service.config_sections import (
    AnnotationSection,
    AppSection,
    AugmentationSection,
    ContentSection,
    CoresSection,
    DatasetSection,
    FoldersSection,
    InferenceSection,
    IPSection,
    JobsSection,
    MongoDBSection,
    PrivacySection,
    RekognitionSection,
    S3Section,
    StorageSection,
)
from media_service.paths import ContentRoot

__all__ = ["ConfigError", "Option", "OPTIONS", "Settings", "load_settings", "mongo_uri_for", "reference",
           "AnnotationSection", "AppSection", "AugmentationSection", "ContentSection", "CoresSection",
           "DatasetSection", "FoldersSection", "InferenceSection", "IPSection", "JobsSection", "MongoDBSection",
           "PrivacySection", "RekognitionSection", "S3Section", "StorageSection"]

ROOT = Path(__file__).resolve().parents[1]  # the project folder, where config.cfg lives
DEFAULT_CONFIG_FILE = ROOT / "config.cfg"


MIN_KEY_LENGTH = 8


@dataclass(frozen=True, repr=False)
class Settings:
    """Every setting of the service, typed, one section a field. The one list of options: `OPTIONS`
    is derived from the sections."""
    mongodb: MongoDBSection
    ip: IPSection
    s3: S3Section
    storage: StorageSection
    app: AppSection
    content: ContentSection
    folders: FoldersSection
    cores: CoresSection
    jobs: JobsSection
    privacy: PrivacySection
    rekognition: RekognitionSection
    inference: InferenceSection
    annotation: AnnotationSection
    dataset: DatasetSection
    augmentation: AugmentationSection
    config_files: tuple[str, ...] = field(default=())  # where the settings came from (never content)
    notices: tuple[str, ...] = field(default=())  # warnings about the files, logged at start-up

    def __repr__(self) -> str:
        return f"Settings({', '.join(repr(getattr(self, name)) for name in SECTIONS)})"

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some sections changed: a section, or a dict of its values that change
        (`settings.replace(app={"api_keys": (key,)})`)."""
        return dataclasses.replace(self, **{name: getattr(self, name).replace(**value) if isinstance(value, dict)
                                            else value for name, value in changes.items()})

    def value(self, attr: str) -> Any:
        """The value of `section.name` (an `Option.attr`)."""
        section, name = attr.split(".")
        return getattr(getattr(self, section), name)

    def content_root(self) -> ContentRoot:
        folders = self.folders
        own = [self.app.path("data_dir"), folders.path("task_base"), *(Path(f).resolve() for f in self.config_files)]
        if not self.storage.url.startswith("s3://"):
            own.append(self.storage.path("url"))
        return ContentRoot(folders.path("content_base"), folders.path("content_path_base"), tuple(own))

    def secrets(self) -> list[str]:
        """Every secret value set, so logs, answers and stored errors can mask them. Of a MongoDB
        URI only the password is secret: the rest tells an operator where the database is."""
        found: list[str] = []
        for option in OPTIONS:
            if option.secret:
                value = self.value(option.attr)
                found.extend(value if isinstance(value, tuple) else [value])
        found.extend(_uri_password(self.mongodb.uri))
        return [s for s in found if s and s != self.mongodb.uri]


# The sections by their name on `Settings`, in the order of docs/CONFIGURATION.md.
SECTIONS: dict[str, type[Section]] = {name: kind for name, kind in typing.get_type_hints(Settings).items()
                                      if isinstance(kind, type) and issubclass(kind, Section)}
OPTIONS: tuple[Option, ...] = tuple(dataclasses.replace(f.metadata["option"], attr=f"{name}.{f.name}")
                                    for name, kind in SECTIONS.items() for f in dataclasses.fields(kind))


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
    notices = legacy_config.translate(committed, config_path.name)  # an old service's file carries over
    secrets_file = env.get("CONFIG_SECRETS_FILE")
    private = _read_ini(Path(secrets_file)) if secrets_file else configparser.ConfigParser()
    # The committed file never holds secrets; an operator's own file elsewhere (an old service's
    # config.cfg named by CONFIG_FILE) may, with a warning.
    own_file = not config_path.resolve().is_relative_to(ROOT)
    secrets_in_file: list[str] = []

    values: dict[str, Any] = {}
    defaulted: set[str] = set()  # options nobody set
    for option in OPTIONS:
        raw = option.default
        source = "default"
        from_file = _lookup(committed, option)
        if from_file is not None and from_file.strip():
            if option.secret and own_file:
                secrets_in_file.append(f"[{option.section}] {option.key}")
            elif option.secret:
                raise ConfigError(
                    f"[{option.section}] {option.key} is a secret and must not be set in {config_path.name}; "
                    f"set the environment variable {option.env_name} or put it in CONFIG_SECRETS_FILE")
            raw, source = from_file, f"[{option.section}] {option.key} in {config_path.name}"
        from_private = _lookup(private, option)
        if from_private is not None:
            raw, source = from_private, f"[{option.section}] {option.key} in CONFIG_SECRETS_FILE"
        for name in option.env_names:
            if name in env:
                raw, source = env[name], f"environment variable {name}"
        if source == "default":
            defaulted.add(option.attr)
        try:
            values[option.attr] = option.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if option.secret else repr(raw)
            raise ConfigError(f"invalid value {shown} for [{option.section}] {option.key} "
                              f"(from {source}): {exc}") from None
    if values["s3.bucket_name"] and "storage.url" in defaulted:
        values["storage.url"] = f"s3://{values['s3.bucket_name']}"
    if secrets_in_file:
        notices.append(f"{config_path.name} holds secrets ({', '.join(secrets_in_file)}): move them to the file "
                       "named by CONFIG_SECRETS_FILE (readable by the service only) or to the environment")
    _check_consistency(values)
    sections = {name: kind(**{f.name: values[f"{name}.{f.name}"] for f in dataclasses.fields(kind)})
                for name, kind in SECTIONS.items()}
    return Settings(**sections, config_files=tuple(str(f) for f in (config_path, secrets_file) if f),
                    notices=tuple(notices))


def _check_consistency(values: dict[str, Any]) -> None:
    if values["jobs.heartbeat_seconds"] >= values["jobs.lease_seconds"]:
        raise ConfigError("[Jobs] heartbeat_seconds must be shorter than [Jobs] lease_seconds")
    url = values["storage.url"]
    if url.startswith("s3://") and not url[5:].split("/", 1)[0]:
        raise ConfigError("[Storage] url (STORAGE_URL) s3:// needs a bucket name, e.g. s3://my-bucket/prefix")
    if not url:
        raise ConfigError("[Storage] url (STORAGE_URL) must not be empty")
    if values["privacy.enabled"] and values["privacy.require_key"] and not values["privacy.api_keys"]:
        raise ConfigError("[Privacy] require_key is on but no key is set: set PRIVACY_API_KEY")
    for attr, name in (("app.api_keys", "APP_API_KEY"), ("privacy.api_keys", "PRIVACY_API_KEY")):
        if any(len(key) < MIN_KEY_LENGTH for key in values[attr]):
            raise ConfigError(f"{name}: every key needs at least {MIN_KEY_LENGTH} characters "
                              "(a short key is guessable, and masking it in logs would mangle them)")


def _uri_password(uri: str) -> list[str]:
    """The password inside a MongoDB URI, as written and decoded."""
    userinfo = uri.partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return [password, unquote_plus(password)] if password else []


def mongo_uri_for(settings) -> str | None:
    """MONGO_URI, else one built from [MongoDB] host/port (and user_name/password), else None (embedded)."""
    mongodb = settings.mongodb
    if mongodb.uri:
        return mongodb.uri
    if mongodb.user_name or mongodb.host:
        auth = f"{quote_plus(mongodb.user_name)}:{quote_plus(mongodb.password)}@" if mongodb.user_name else ""
        return f"mongodb://{auth}{mongodb.host or '127.0.0.1'}:{mongodb.port}/{mongodb.db_name}"
    return None


def reference() -> str:
    """docs/CONFIGURATION.md: every setting, from `OPTIONS` (regenerate with
    `.venv/bin/python -m media_service.config > docs/CONFIGURATION.md`; a test compares)."""
    lines = ["# Configuration reference", "",
             "Generated from `media_service/config.py` (`.venv/bin/python -m media_service.config > "
             "docs/CONFIGURATION.md`). Each setting is read from `config.cfg`, then `CONFIG_SECRETS_FILE`, then the "
             "environment (the variables listed; later ones win). Secrets may not be written in `config.cfg`.", ""]
    committed = _read_ini(DEFAULT_CONFIG_FILE)
    for section in dict.fromkeys(option.section for option in OPTIONS):
        lines += [f"## [{section}]", "", "| key | environment | type | default | meaning |", "|---|---|---|---|---|"]
        for option in (o for o in OPTIONS if o.section == section):
            default = f"`{option.default}`" if option.default else "(empty)"
            in_file = _lookup(committed, option)
            if in_file is not None and in_file.strip() and in_file.strip() != option.default:
                default += f" (config.cfg: `{in_file.strip()}`)"
            names = ", ".join(f"`{name}`" for name in option.env_names)
            meaning = option.doc + (" **Secret.**" if option.secret else "")
            lines.append(f"| `{option.key}` | {names} | {getattr(option.parse, 'kind', 'text')} | {default} | "
                         f"{meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
