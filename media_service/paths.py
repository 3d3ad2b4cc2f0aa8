"""Path safety: a path a caller names never leads outside the configured root it belongs to."""
from __future__ import annotations

from pathlib import Path


def resolve_inside(root: Path, user_path: str) -> Path | None:
    """The caller's path resolved (symlinks too) if it stays inside `root`, else None."""
    if "\x00" in user_path:
        return None
    root = root.resolve()
    candidate = Path(user_path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if resolved == root or root in resolved.parents:
        return resolved
    return None
