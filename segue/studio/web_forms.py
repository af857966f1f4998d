"""Reading requests: the signed-in login, CSRF checks and bounded, typed request fields.
Every failure is a Refusal naming the field at fault."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from segue.studio.access import CSRF_HEADER, FORM_COOKIE, LOGIN_COOKIE, digest, new_token, same
from segue.studio.http import Refusal
from segue.studio.store import Login, LoginKind, StudioStore


def now_utc() -> datetime:
    return datetime.now(UTC)


def current_login(request: Request, store: StudioStore, kind: LoginKind) -> Login:
    """The request's login of `kind`; 401 when there is none or it expired."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    login = store.login(digest(cookie), now_utc()) if cookie else None
    if login is None or login.kind != kind:
        raise Refusal(401, "login", "not signed in, or the sign-in expired: open your invite "
                      "link again" if kind == "annotator" else "admin sign-in required")
    return login


def current_admin(request: Request, store: StudioStore, admin_open: bool) -> Login:
    """The admin's login: 403 when the server has no admin password, 401 when not signed in."""
    if not admin_open:
        raise Refusal(403, "admin", "admin pages are closed: the server has no "
                      "SEGUE_STUDIO_ADMIN_PASSWORD_FILE")
    return current_login(request, store, "admin")


def admin_or_sign_in(request: Request, store: StudioStore, admin_open: bool
                     ) -> Login | RedirectResponse:
    """As current_admin for pages: a browser that is not signed in is sent to sign in."""
    try:
        return current_admin(request, store, admin_open)
    except Refusal as refusal:
        if refusal.status == 401:
            return RedirectResponse("/admin/login", status_code=303)
        raise


def sign_in(response: Response, store: StudioStore, kind: LoginKind, subject_id: str,
            hours: float) -> Login:
    """Creates a login and sets its cookie: HttpOnly, Secure, SameSite=Strict."""
    cookie = new_token()
    login = Login(kind, subject_id, new_token(), now_utc() + timedelta(hours=hours))
    store.create_login(digest(cookie), login)
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=int(hours * 3600), httponly=True,
                        secure=True, samesite="strict", path="/")
    return login


def check_origin(request: Request) -> None:
    """403 when a browser says the request came from another origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise Refusal(403, "origin", "cross-origin requests are refused")


def check_header_csrf(request: Request, login: Login) -> None:
    """JSON calls carry the login's CSRF token in the X-CSRF-Token header."""
    check_origin(request)
    if not same(request.headers.get(CSRF_HEADER, ""), login.csrf_token):
        raise Refusal(403, "csrf", "missing or wrong CSRF token: reload the page")


def check_form_csrf(request: Request, form: dict[str, str], expected: str) -> None:
    check_origin(request)
    if not expected or not same(form.get("csrf", ""), expected):
        raise Refusal(403, "csrf", "missing or wrong CSRF token: reload the page")


def form_token(request: Request) -> str:
    """The double-submit token of a form shown before sign-in (kept from an earlier page)."""
    return request.cookies.get(FORM_COOKIE) or new_token()


def set_form_cookie(response: Response, token: str) -> None:
    response.set_cookie(FORM_COOKIE, token, max_age=3600, httponly=True, secure=True,
                        samesite="strict", path="/")


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form's text fields; 400 for anything else."""
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        raise Refusal(415, "body", "expected an application/x-www-form-urlencoded form")
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception as e:  # starlette raises several types for malformed bodies
        raise Refusal(400, "body", "malformed form") from e
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def read_json(request: Request) -> dict[str, Any]:
    """A JSON object body; 400 naming `body` otherwise."""
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal(400, "body", "the body is not valid JSON") from e
    if not isinstance(data, dict):
        raise Refusal(400, "body", "the body must be a JSON object")
    return data


def text_field(data: dict[str, Any], name: str, max_chars: int = 64) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise Refusal(422, name, f"{name} must be a string of 1 to {max_chars} characters")
    return value


def int_field(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refusal(422, name, f"{name} must be an integer from {low} to {high}")
    return value


def seconds_field(data: dict[str, Any], name: str, high: float) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not 0 <= value <= high:
        raise Refusal(422, name, f"{name} must be a number of seconds from 0 to {high:g}")
    return float(value)


__all__ = ["admin_or_sign_in", "check_form_csrf", "check_header_csrf", "check_origin",
           "current_admin", "current_login",
           "form_token", "int_field", "now_utc", "read_form", "read_json", "seconds_field",
           "set_form_cookie", "sign_in", "text_field"]
