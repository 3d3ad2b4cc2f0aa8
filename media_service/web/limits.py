"""Request bodies are read as a stream that stops at the limit; nothing here holds a body.

Flask refuses a declared Content-Length over the limit before reading. A chunked body (no
Content-Length) is read through `CappedInput`, which answers 413 the moment the body passes the
limit, so a request costs the same memory whatever a client sends: Werkzeug spools multipart
files to temporary files, and url-encoded, JSON and raw bodies are held up to the limit at most.
(Werkzeug's own cap on such a body stops reading at the limit without an error, and the route
would see a cut form: one byte more is read here to tell the two apart.)
"""
from __future__ import annotations

import io

from werkzeug.exceptions import RequestEntityTooLarge

ENVIRON_KEY = "media_service.body"
PIECE = 64 * 1024
# Werkzeug's development server (`python app.py`, the tests) drains what a client still sends
# after the answer 10 MB a read; it is drained here first in small reads. Past this much the rest
# is left to it (gunicorn discards or closes on its own, a small buffer at a time).
DRAIN_MAX_BYTES = 1 << 30


class CappedInput(io.RawIOBase):
    """`wsgi.input` that raises 413 (RequestEntityTooLarge) once a chunked body passes `limit`,
    and never reads past a declared Content-Length."""

    def __init__(self, stream, limit: int, declared: int | None):
        self._stream, self.limit, self.declared = stream, limit, declared
        self.consumed = 0
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.ended:
            return 0
        end = self.declared if self.declared is not None else self.limit
        wanted = min(len(buffer), end - self.consumed)
        data = self._stream.read(wanted) if wanted > 0 else b""
        self.consumed += len(data)
        if not data:
            self.ended = True
        elif self.declared is None and self.consumed == self.limit:
            self._check_ended()  # at the limit: one byte more is a body too large
        buffer[:len(data)] = data
        return len(data)

    def _check_ended(self) -> None:
        if self._stream.read(1):
            self.consumed += 1
            raise RequestEntityTooLarge(f"the request body is larger than {self.limit} bytes")
        self.ended = True

    def discard_rest(self) -> None:
        """Read what the client still sends, a small piece at a time, and drop it."""
        drained = 0
        while not self.ended and drained < DRAIN_MAX_BYTES:
            size = PIECE if self.declared is None else min(PIECE, self.declared - self.consumed)
            data = self._stream.read(size) if size > 0 else b""
            self.consumed += len(data)
            drained += len(data)
            self.ended = not data


def allow(environ, max_bytes: int) -> None:
    """A route that takes larger bodies (the try-it upload) raises this request's limit before it
    reads the body."""
    body = environ.get(ENVIRON_KEY)
    if body is not None:
        body.limit = max_bytes


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def __call__(self, environ, start_response):
        body = self._wrap(environ)
        answer = self.app(environ, start_response)
        if body is not None and not body.ended and "werkzeug.socket" in environ:
            body.discard_rest()  # before Werkzeug's server drains it 10 MB a read
        return answer

    def _wrap(self, environ) -> CappedInput | None:
        length = environ.get("CONTENT_LENGTH", "").strip()
        chunked = not length and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not (chunked or (length.isdigit() and int(length) > 0)):
            return None
        body = CappedInput(environ["wsgi.input"], self.max_bytes, None if chunked else int(length))
        environ["wsgi.input"] = body
        environ[ENVIRON_KEY] = body
        if chunked:
            environ["wsgi.input_terminated"] = True  # the server de-chunks; this stream ends at the limit
        return body
