"""CORS for the platform's browser origins (`[App] cors_origins`): only those origins get the
headers that let a page read the answers; every other origin gets none (browsers then refuse)."""
from __future__ import annotations

from flask import Flask, request

ALLOWED_HEADERS = "Content-Type, X-API-Key"


def install(app: Flask, origins: tuple[str, ...]) -> None:
    allowed = {origin.rstrip("/") for origin in origins}

    @app.after_request
    def cors_headers(response):
        origin = request.headers.get("Origin")
        if not origin or origin not in allowed:
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.vary.add("Origin")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:  # preflight
            response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "GET, POST")
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response
