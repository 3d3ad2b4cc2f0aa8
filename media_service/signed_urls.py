"""Expiring signed URLs for objects in local storage: what S3's presigned URLs are for a bucket.

A URL is `<public_url>/storage/<key>?expires=<unix time>&signature=<hex>`, the signature an
HMAC-SHA256 over the key and the expiry with a secret only this service holds. Anyone with the
URL may read that one object until it expires; nothing else (no listing, no other key).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

ROUTE = "/storage/"


class UrlSigner:
    def __init__(self, secret: bytes, base_url: str):
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, key: str, expires_seconds: int, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + expires_seconds)
        return (f"{self.base_url}{ROUTE}{quote(key, safe='/')}?expires={expires}"
                f"&signature={self._signature(key, expires)}")

    def check(self, key: str, expires: str | None, signature: str | None, now: float | None = None) -> str | None:
        """None when the URL is good, else why not (for the log; the caller answers 403)."""
        if not expires or not signature or not expires.isdigit():
            return "unsigned"
        if not hmac.compare_digest(signature.encode(), self._signature(key, int(expires)).encode()):
            return "bad signature"
        if int(expires) < (time.time() if now is None else now):
            return "expired"
        return None


def signer_for(settings) -> UrlSigner | None:
    """The service's signer: `[App] url_signing_key`, else one derived from the first API key (every
    process of a deployment shares it); None when neither is set (local URLs are then file://)."""
    if settings.app.url_signing_key:
        secret = settings.app.url_signing_key.encode()
    elif settings.app.api_keys:
        secret = hmac.new(settings.app.api_keys[0].encode(), b"local storage URLs", hashlib.sha256).digest()
    else:
        return None
    return UrlSigner(secret, settings.app.public_url or f"http://127.0.0.1:{settings.ip.port}")
