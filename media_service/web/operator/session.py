"""Who may use the jobs pages: the service's key ([App] API_key / APP_API_KEY), never anything weaker.

- Scripts send it as the `X-API-Key` header on any route of the jobs pages.
- A browser posts it once to the login form and gets Flask's signed session cookie
  (`media_jobs_session`: HttpOnly, SameSite=Strict, Secure on HTTPS) holding an expiry and a random
  nonce, never the key. The cookie is signed (HMAC, itsdangerous) with a secret derived from the key
  the person logged in with. `SECRET_KEY` and `SECRET_KEY_FALLBACKS` hold the secrets of every
  configured key, so a cookie signed with any of them is accepted, and removing a key from
  APP_API_KEY ends the sessions it signed. A session ends after `[App] jobs_session_hours` (as that
  was at login), and is never accepted for longer than a session lasts now.
- A POST authenticated by the cookie must also carry the page's CSRF token (derived from the cookie)
  as the `X-CSRF-Token` header or a `csrf_token` form field.
Without the key: 401 (the HTML pages answer with the login form, the other routes with JSON).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import datetime, timezone

from flask import Blueprint, Flask, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from media_service.web.auth import count_wrong_key, key_matches
from media_service.web.client import current_client
from media_service.web.operator import headers
from media_service.web.operator.views import json_error
from media_service.web.platform import services

log = logging.getLogger(__name__)

bp = Blueprint("jobs_session", __name__)

SESSION_COOKIE = "media_jobs_session"
CSRF_HEADER = "X-CSRF-Token"
_SIGNING_SECRET = "jobs_session_secret"  # on `g` during a login: the secret its new cookie is signed with
# The login form and the page's own assets need no key; these pages answer a refusal with the form.
_OPEN = ("jobs_session.login", "jobs_session.login_form", "jobs_page.static")
_HTML = ("jobs_page.page", "jobs_page.upload_page", "jobs_session.logout")


# -- Flask's session, signed with the service's keys ---------------------------------------------
def _secret(key: str) -> bytes:
    return hmac.new(key.encode(), b"media-service jobs page session v1", hashlib.sha256).digest()


class KeySignedSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session, but a new cookie is signed with the secret of the key its
    person logged in with (any configured key's secret is accepted), its expiry is the session's own,
    and it is Secure when the request came over HTTPS."""

    def get_signing_serializer(self, app):
        serializer = super().get_signing_serializer(app)
        signing = g.get(_SIGNING_SECRET)
        if serializer is not None and signing is not None:
            serializer.secret_keys.append(signing)  # itsdangerous signs with the last one
        return serializer

    def get_expiration_time(self, app, session):
        expires = session.get("expires")
        return datetime.fromtimestamp(expires, timezone.utc) if isinstance(expires, int) else None

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure


def install(app: Flask, api_keys: tuple[str, ...]) -> None:
    """Flask's session for the jobs pages: `SECRET_KEY` from the last configured key (the newest, as
    a rotation adds it), `SECRET_KEY_FALLBACKS` from the others, the cookie's name and flags."""
    keys = [_secret(key) for key in api_keys]
    app.config.update(SECRET_KEY=keys[-1] if keys else None, SECRET_KEY_FALLBACKS=keys[:-1],
                      SESSION_COOKIE_NAME=SESSION_COOKIE, SESSION_COOKIE_PATH="/", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict")
    app.session_interface = KeySignedSessions()


def start_session(key: str, hours: float, now: float | None = None) -> None:
    """A new session for this request's answer, for a person who logged in with `key` (a configured key)."""
    session.clear()
    session["expires"] = int((now or time.time()) + hours * 3600)
    session["nonce"] = secrets.token_urlsafe(16)
    setattr(g, _SIGNING_SECRET, _secret(key))


def session_valid(hours: float, now: float | None = None) -> bool:
    """This request's session (its signature checked by Flask against every configured key's
    secret) has not expired, nor is it valid for longer than a session lasts now."""
    now = now or time.time()
    expires = session.get("expires")
    if not (isinstance(expires, int) and not isinstance(expires, bool) and session.get("nonce")):
        return False
    return now <= expires <= now + hours * 3600 + 60


def csrf_token(cookie: str) -> str:
    """The CSRF token of a session cookie."""
    return hmac.new(cookie.encode(), b"media-service jobs page csrf", hashlib.sha256).hexdigest()


def page_csrf() -> str:
    """The CSRF token for a page's forms and scripts: only for a person logged in with the cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return csrf_token(cookie) if cookie and g.get("jobs_auth") == "cookie" else ""


# -- every route of the jobs pages ---------------------------------------------------------------
def _matching_key(given: str, keys: tuple[str, ...]) -> str | None:
    found = None
    for key in keys:  # no early exit
        if hmac.compare_digest(given.encode(), key.encode()) and found is None:
            found = key
    return found


def _authenticated() -> str | None:
    """"header" (X-API-Key), "cookie" (a valid session) or None."""
    settings = services().settings
    given = request.headers.get("X-API-Key")
    if given:
        if key_matches(given, settings.app.api_keys):
            return "header"
        count_wrong_key()  # 429 once this client has sent too many
        return None
    if request.cookies.get(SESSION_COOKIE) and session_valid(settings.app.jobs_session_hours):
        return "cookie"
    return None


def require_key():
    """before_request of every blueprint of the jobs pages: the key, as the X-API-Key header or a
    session; a state-changing request with the session also its CSRF token."""
    if request.endpoint in _OPEN or request.method == "OPTIONS":  # OPTIONS: Flask's answer, the methods only
        return None
    how = _authenticated()
    if how is None:
        if request.endpoint in _HTML:
            return login_page(401, None)
        return json_error(401, "this needs the service's key: log in at /jobs, or send it as the X-API-Key header")
    if how == "cookie" and request.method not in ("GET", "HEAD"):
        given = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
        expected = csrf_token(request.cookies[SESSION_COOKIE])
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return json_error(403, "missing or wrong CSRF token: reload the jobs page")
    g.jobs_auth = how
    return None


bp.before_request(require_key)
bp.after_request(headers.page_headers)


# -- logging in and out --------------------------------------------------------------------------
def login_page(status: int, error: str | None):
    return render_template("jobs/login.html", error=error), status


@bp.get("/jobs/login")
def login_form():
    """GET /jobs/login (no key): the login form (HTML)."""
    return login_page(200, None)


@bp.post("/jobs/login")
def login():
    """POST /jobs/login (no key; form field `key`): with a configured key, 303 to /jobs and the
    session cookie (HttpOnly, SameSite=Strict, Secure on HTTPS, for `[App] jobs_session_hours`);
    otherwise 401 and the form again. The key is never logged."""
    settings = services().settings
    key = _matching_key(request.form.get("key", ""), settings.app.api_keys)
    if key is None:
        log.warning("jobs page: a login with a wrong key from %s", current_client().address)
        if request.form.get("key"):
            count_wrong_key()  # 429 once this client has sent too many
        return login_page(401, "That is not the service's key.")
    start_session(key, settings.app.jobs_session_hours)
    return redirect(url_for("jobs_page.page"), 303)


@bp.post("/jobs/logout")
def logout():
    """POST /jobs/logout (key; with the cookie also the CSRF token): 303 to /jobs, cookie removed."""
    session.clear()  # Flask removes the cookie
    return redirect(url_for("jobs_page.page"), 303)
