"""How one setting is declared and read: `Option` (where it comes from), the parsers (text in,
typed value out, `ValueError` naming what is wrong) and `Section`, the base of the frozen
dataclass each INI section is read into (`config_sections.py`).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key and the variable."""


def _kind(text: str):
    """Names what a parser accepts, for docs/CONFIGURATION.md."""
    def mark(parse):
        parse.kind = text
        return parse
    return mark


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    @_kind(f"integer{f' >= {minimum}' if maximum is None and minimum is not None else ''}"
           f"{f' {minimum}..{maximum}' if maximum is not None else ''}")
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value
    return parse


def _float(minimum: float | None = None) -> Callable[[str], float]:
    @_kind(f"number >= {minimum:g}" if minimum is not None else "number")
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if value != value or (minimum is not None and value < minimum):
            raise ValueError(f"must be a number >= {minimum}")
        return value
    return parse


@_kind("true or false")
def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


@_kind("comma-separated list")
def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@_kind("comma-separated networks (CIDR)")
def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in _list(raw))


def _choice(*options: str) -> Callable[[str], str]:
    @_kind("one of " + ", ".join(options))
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value
    return parse


@_kind("text")
def _text(raw: str) -> str:
    return raw.strip()


@_kind("kind: n, ... pairs")
def _limits(raw: str) -> tuple[tuple[str, int], ...]:
    """`kind: n` pairs, e.g. `content: 2, privacy: 1`."""
    found = []
    for entry in _list(raw):
        kind, sep, number = entry.partition(":")
        if not sep or not kind.strip() or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"'{entry}' is not 'kind: n' with n >= 1")
        found.append((kind.strip(), int(number)))
    return tuple(found)


def _pairs(value: Callable[[str], Any], kind: str) -> Callable[[str], Mapping[str, Any]]:
    """`name: value` entries, comma-separated (`person: Staff, cell phone: Phone`), names as written."""
    @_kind(kind)
    def parse(raw: str) -> Mapping[str, Any]:
        found = {}
        for entry in _list(raw):
            name, sep, text = entry.partition(":")
            if not sep or not name.strip() or not text.strip():
                raise ValueError(f"'{entry}' is not 'name: value'")
            found[name.strip()] = value(text.strip())
        return MappingProxyType(found)
    return parse


def _score(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _structured(raw: str) -> Any:
    """An old service's value: JSON, else `a: x, b: y` (or `a=x`) pairs, else `a, b` items (never eval;
    `legacy_config` has already turned a Python literal into JSON). Empty: None."""
    text = raw.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items and all(":" in item or "=" in item for item in items):
        return {re.split(r"[:=]", item, maxsplit=1)[0].strip(): re.split(r"[:=]", item, maxsplit=1)[1].strip()
                for item in items}
    return items


def _by_id(value: Callable[[Any], Any] = lambda v: v, kind: str = "JSON object or id: value pairs"
           ) -> Callable[[str], Mapping[str, Any]]:
    """A mapping by property id (JSON object or `id: value` pairs); empty: none."""
    @_kind(kind)
    def parse(raw: str) -> Mapping[str, Any]:
        given = _structured(raw)
        if given and not isinstance(given, Mapping):
            raise ValueError("must be a mapping of property id to value (a JSON object or id: value pairs)")
        return MappingProxyType({str(key): value(item) for key, item in (given or {}).items()})
    return parse


def _divisor(value: Any) -> float:
    try:
        divisor = float(value)
    except (TypeError, ValueError):
        divisor = float("nan")
    if not divisor > 0:
        raise ValueError(f"divides by {value!r}: it must be a positive number")
    return divisor


@_kind("JSON list or comma-separated list")
def _ids(raw: str) -> tuple[str, ...]:
    given = _structured(raw)
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, (list, type(None))):
        raise ValueError("must be a list of property ids (a JSON list or comma-separated)")
    return tuple(str(item) for item in given or ())


@_kind("true or false (empty: true)")
def _bool_true(raw: str) -> bool:
    return _bool(raw) if raw.strip() else True


@_kind("number above 0, at most 1 (empty: 1)")
def _share(raw: str) -> float:
    if not raw.strip():
        return 1.0
    value = float(raw.strip())
    if not 0.0 < value <= 1.0:
        raise ValueError("must be within (0, 1]")
    return value


@dataclass(frozen=True)
class Option:
    """Where one setting comes from and how it is read."""
    section: str
    key: str
    parse: Callable[[str], Any]
    default: str
    secret: bool = False
    env_alias: str | tuple[str, ...] | None = None  # well-known variable names that also set it
    doc: str = ""                                    # what it means (docs/CONFIGURATION.md)
    attr: str = ""                                   # where it is read: `privacy.threshold`

    @property
    def env_name(self) -> str:
        return f"{self.section}_{self.key}".upper()

    @property
    def env_names(self) -> tuple[str, ...]:
        """Every variable that sets it; later names win (the old service's most specific)."""
        aliases = (self.env_alias,) if isinstance(self.env_alias, str) else self.env_alias or ()
        return (self.env_name, *aliases)


def _option(section: str, key: str, parse: Callable[[str], Any], default: str, **kwargs: Any) -> Any:
    return field(metadata={"option": Option(section, key, parse, default, **kwargs)})


class Section:
    """The settings of one section, typed: a frozen dataclass whose fields are `_option`s.
    Its repr never shows a secret."""

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={'***' if f.metadata['option'].secret and getattr(self, f.name) else
                                     repr(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({shown})"

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def path(self, name: str) -> Path:
        """A configured folder, relative paths taken from the working directory."""
        return Path(getattr(self, name)).expanduser().resolve()
