"""Signing in to the review pages: a session cookie from a ``review`` token.

The token is checked once, at sign-in; the cookie holds only the reviewer id and an expiry,
signed with the server's secret key (:func:`sluicegate.server._pages_auth.sign_session`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from sluicegate.server._pages_auth import (
    SESSION_COOKIE,
    SESSION_TTL,
    safe_next,
    sign_session,
    signed_in,
)
from sluicegate.server._pages_view import redirect, render
from sluicegate.server.state import ServerState, state_of

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_MAX_TOKEN = 1024


@router.get("/login")
def login_page(request: Request, next: str = "") -> Response:
    """Sign in with a review token."""
    st = state_of(request)
    return render("login.html", viewer=signed_in(request, st), next=safe_next(next), error="")


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the token and set the session cookie (never the token itself)."""
    st = state_of(request)
    token = token.strip()
    info = st.store.token_info(token) if 0 < len(token) <= _MAX_TOKEN else None
    if info is None or info.scope != "review":
        error = (
            "That token is unknown or revoked."
            if info is None
            else "That is a request token; sign in with a review token."
        )
        return render("login.html", status=401, viewer=None, next=safe_next(next), error=error)
    response = redirect(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        sign_session(st.secret_key, info.principal),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        secure=_https(request, st),
        httponly=True,
        samesite="lax",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the session."""
    st = state_of(request)
    response = redirect("/login")
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_https(request, st), httponly=True, samesite="lax"
    )
    return response


def _https(request: Request, st: ServerState) -> bool:
    return request.url.scheme == "https" or st.settings.server_url.startswith("https://")
