"""Database deadlines that fit the route.

Most routes make a few quick database calls: together they get `[MongoDB] timeout_seconds`
(`start_request_deadline`, before each request), so a down or hung server answers 503 at once.
A route that waits for something (a job to stop) must not spend that budget on the wait: it is
marked `per_call`, and each of its calls gets the budget on its own inside `call_deadline()`.
"""
from __future__ import annotations

from flask import current_app, g

from media_service.mongo import deadline


def per_call(view):
    """Mark a view whose database calls each get their own deadline (no request deadline)."""
    view.own_database_deadlines = True
    return view


def wants_own_deadlines(view) -> bool:
    return bool(getattr(view, "own_database_deadlines", False))


def call_deadline():
    """The deadline of one database call: `[MongoDB] timeout_seconds`."""
    return deadline(current_app.extensions["media"].settings.mongodb.timeout_seconds)


def start_request_deadline(view, seconds: float) -> None:
    """Every database call of this request together gets `seconds`, unless `view` is `per_call`."""
    if wants_own_deadlines(view):
        return
    g.database_deadline = deadline(seconds)
    g.database_deadline.__enter__()


def restart_request_deadline(seconds: float) -> None:
    """The calls from here on get `seconds` of their own (after a long upload read, say)."""
    if "database_deadline" in g:
        end_request_deadline()
        g.database_deadline = deadline(seconds)
        g.database_deadline.__enter__()


def end_request_deadline() -> None:
    if "database_deadline" in g:
        g.database_deadline.__exit__(None, None, None)
