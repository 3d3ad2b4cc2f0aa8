"""What never leaves the service: configured secrets (in any encoding a client or a log may use)
and absolute server paths (callers see them relative to the configured roots)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

MASK = "***"


def _secret_pattern(secret: str) -> str:
    """Each character as itself or percent-encoded (either case), a space also as '+': a key sent
    in a query string or a form is masked however the client encoded it."""
    parts = []
    for char in secret:
        options = [re.escape(char), "".join(f"%{byte:02x}" for byte in char.encode())]
        if char == " ":
            options.append(r"\+")
        parts.append("(?:" + "|".join(options) + ")")
    return "".join(parts)


class SecretMask:
    def __init__(self, secrets: Iterable[str]):
        found = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first
        self._pattern = re.compile("|".join(_secret_pattern(s) for s in found), re.IGNORECASE) if found else None

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern else value

    def value(self, value: Any) -> Any:
        """Strings masked inside dicts and lists too (keys included: rejections echo values as keys)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        return value


class PathMask:
    """Absolute paths under the configured roots become `<label>/relative/path`."""

    def __init__(self, roots: dict[str, Path]):
        pairs = [(str(Path(root).resolve()), label) for label, root in roots.items() if str(root)]
        self._roots = sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)

    def text(self, value: str) -> str:
        for root, label in self._roots:
            value = value.replace(root + "/", f"<{label}>/").replace(root, f"<{label}>")
        return value


class Redactor:
    """Both masks, for any text that leaves the service (answers, stored errors, logs)."""

    def __init__(self, secrets: Iterable[str], roots: dict[str, Path]):
        self.secrets = SecretMask(secrets)
        self.paths = PathMask(roots)

    def text(self, value: str) -> str:
        return self.paths.text(self.secrets.text(value))

    def value(self, value: Any) -> Any:
        return self.secrets.value(value)

    @classmethod
    def from_settings(cls, settings) -> "Redactor":
        roots = {"content": settings.folders.content_base, "scratch": settings.folders.task_base,
                 "data": settings.app.data_dir, "privacy-input": settings.privacy.input_dir,
                 "privacy-output": settings.privacy.output_dir}
        if not settings.storage.url.startswith("s3://"):
            roots["storage"] = settings.storage.url
        return cls(settings.secrets(), {label: Path(root).expanduser() for label, root in roots.items() if root})
