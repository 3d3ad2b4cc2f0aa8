"""Request-level limits that Flask alone does not enforce.

A chunked body (no Content-Length) is read here up to `max_bytes`; one byte more and the answer is
413, where Werkzeug would cut the body at the limit and let the route see a truncated form.
"""
from __future__ import annotations

import io
import json


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def __call__(self, environ, start_response):
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(self.max_bytes + 1)
            if len(body) > self.max_bytes:
                answer = json.dumps({"message": f"the request body is larger than {self.max_bytes} bytes",
                                     "status": 413}).encode()
                start_response("413 Request Entity Too Large", [("Content-Type", "application/json"),
                                                                ("Content-Length", str(len(answer))),
                                                                ("Connection", "close")])
                return [answer]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("wsgi.input_terminated", None)
        return self.app(environ, start_response)
