"""Shared-key checks for the routes."""
from __future__ import annotations

import hmac


def key_matches(given: str, configured: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    given_bytes = given.encode()
    matched = False
    for key in configured:
        matched |= hmac.compare_digest(given_bytes, key.encode())
    return matched
