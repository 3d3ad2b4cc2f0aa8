"""The operator's jobs pages (issue 14, items 4 and 8), one job a module:

- `session.py`: who may use them (the service's key as a header, or Flask's signed session after a
  login; CSRF on state-changing requests), the login form, logging out;
- `views.py`: what a job, an upload and its tasks look like (pages and JSON);
- `routes.py`: `GET /jobs`, an upload's page, and the JSON API (`/api/jobs...`: list, one, retry, cancel);
- `media.py`: task videos of the local storage (`/jobs/media/<key>`);
- `headers.py`: the security headers of every answer (CSP, no framing, no caching);
- `try_it.py`: the try-it form (`POST /jobs/try`), registered only with `[App] try_it`.
HTML comes from `web/templates/jobs/`, the page's script and styles from `web/static/`.
"""
from __future__ import annotations

from flask import Flask

from media_service.web.operator import media, routes, session, try_it


def register(app: Flask, settings) -> None:
    """The jobs pages on `app`: Flask's session signed with the service's keys, and the blueprints
    (the try-it form's only when `[App] try_it` is on)."""
    session.install(app, settings.app.api_keys)
    for blueprint in (session.bp, routes.bp, media.bp, *((try_it.bp,) if settings.app.try_it else ())):
        app.register_blueprint(blueprint)
