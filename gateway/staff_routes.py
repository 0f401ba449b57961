"""Staff sign-in for the portal, under /auth (gateway/staff.py has the rules):

    POST /auth/sign-in    {"username", "password"} → the member and a CSRF token; sets the cookie
    GET  /auth/session    the signed-in member and the session's CSRF token
    POST /auth/password   {"current_password", "new_password"}; the member's other sessions end
    POST /auth/sign-out   ends the session

These are the portal's, not part of the /api/v1 document: client systems use API keys. Once
signed in, the portal calls /api/v1 with the cookie instead of a key, and every write echoes
the CSRF token in X-CSRF-Token. Sign-in itself takes only a JSON body, which a page on another
site cannot send here without a CORS preflight that the gateway never grants.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from gateway.http import ApiError, json_body
from gateway.ratelimit import RateLimiter, retry_after_seconds
from gateway.staff import SignInBusy, SignInLocked, SignInRefused, StaffAccounts, StaffInputRejected
from shared.errors import InvalidInput
from shared.settings import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
REFUSED = "unknown username or wrong password"


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


def cookie_name(settings: Settings) -> str:
    # The __Host- prefix makes browsers refuse the cookie unless it is Secure, for this host
    # only and for every path: no subdomain or plain-HTTP page can plant or shadow it.
    return "__Host-gridlink_session" if settings.session_cookie_secure else "gridlink_session"


def session_caller(staff: StaffAccounts, settings: Settings) -> dict[str, Any] | None:
    """The staff member whose session cookie came with the request, if it is still valid.
    A write must carry the session's CSRF token, and /api/v1 stays closed while the password
    must be changed: else 403, and nothing is done."""
    token = request.cookies.get(cookie_name(settings))
    caller = staff.session(token) if token else None
    if caller and request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent.encode(), caller["csrf_token"].encode()):
            g.key = caller
            raise ApiError(
                403,
                "csrf_token_invalid",
                "a write made with a portal session must carry the session's token in X-CSRF-Token",
            )
    if caller and caller["password_change_required"] and request.path.startswith("/api/"):
        g.key = caller
        raise ApiError(
            403,
            "password_change_required",
            "the password was set by an administrator or has expired: change it first (POST /auth/password)",
        )
    return caller


def retry_after(wait: timedelta | float) -> dict[str, str]:
    seconds = wait.total_seconds() if isinstance(wait, timedelta) else wait
    return {"Retry-After": str(retry_after_seconds(seconds))}


def busy() -> ApiError:
    return ApiError(
        503,
        "sign_in_busy",
        "too many sign-ins at this moment; try again shortly",
        headers={"Retry-After": "5"},
    )


def add_staff_routes(app: Flask, staff: StaffAccounts, limiter: RateLimiter, settings: Settings) -> None:
    per_minute = settings.login_attempts_per_minute

    def signed_in() -> dict[str, Any]:
        caller = session_caller(staff, settings)
        if caller is None:
            raise ApiError(401, "unauthorized", "not signed in, or the session has ended")
        g.key = caller
        return caller

    def member(caller: dict[str, Any]) -> Response:
        shown = ("username", "display_name", "roles", "scope", "csrf_token", "password_change_required")
        response = jsonify(
            {field: caller[field] for field in shown}
            | {"session_ends_at": caller["session_ends_at"].isoformat()}
        )
        response.headers["Cache-Control"] = "no-store"  # it carries the CSRF token
        return response

    @app.post("/auth/sign-in")
    def sign_in() -> Any:
        wait = limiter.admit(f"sign-in from {request.remote_addr}", per_minute / 60, per_minute)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"over {per_minute} sign-in attempts a minute from this address",
                headers=retry_after(wait),
            )
        attempt = json_body(SignIn)
        g.claimed_username = attempt.username
        try:
            session = staff.sign_in(attempt.username, attempt.password)
        except SignInLocked as exc:
            raise ApiError(
                429,
                "sign_in_locked",
                f"too many failed sign-ins for this username: locked for {settings.login_lockout_minutes} "
                "minutes",
                headers=retry_after(exc.retry_after),
            ) from None
        except SignInRefused:
            raise ApiError(401, "sign_in_refused", REFUSED) from None
        except SignInBusy:
            raise busy() from None
        g.key = session.principal
        response = member(session.principal)
        response.set_cookie(
            cookie_name(settings),
            session.token,
            max_age=settings.session_max_hours * 3600,
            path="/",
            secure=settings.session_cookie_secure,
            httponly=True,
            samesite="Strict",
        )
        return response

    @app.get("/auth/session")
    def current_session() -> Any:
        return member(signed_in())

    @app.post("/auth/password")
    def change_password() -> Any:
        signed_in()
        change = json_body(PasswordChange)
        try:
            staff.change_password(
                request.cookies[cookie_name(settings)], change.current_password, change.new_password
            )
        except SignInLocked as exc:
            raise ApiError(
                429,
                "sign_in_locked",
                "too many wrong passwords for this account",
                headers=retry_after(exc.retry_after),
            ) from None
        except SignInRefused:
            raise InvalidInput.single("current_password", "wrong password") from None
        except SignInBusy:
            raise busy() from None
        except StaffInputRejected as exc:
            raise InvalidInput.single(exc.field, exc.message) from None
        return "", 204

    @app.post("/auth/sign-out")
    def sign_out() -> Any:
        signed_in()
        staff.sign_out(request.cookies[cookie_name(settings)])
        response = Response(status=204)
        response.delete_cookie(
            cookie_name(settings),
            path="/",
            secure=settings.session_cookie_secure,
            httponly=True,
            samesite="Strict",
        )
        return response
