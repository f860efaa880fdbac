"""Signing in to the review pages with a ``review`` token, and signing out.

Signing in starts a session in the database, tied to the token
(:class:`~sluicegate.store.sessions.SessionTable`), through the server's writer; the cookie
holds only the session's secret and expiry, signed (:func:`sluicegate.server.pages.auth.
sign_session`). Every page request checks the session there, so signing out, or revoking the
token, ends it on every replica. Both forms are CSRF-protected
(:mod:`sluicegate.server.pages.auth`): a page on another site can neither sign a reviewer in
as someone else nor sign them out.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from sluicegate.server.pages.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL,
    from_this_site,
    login_csrf,
    login_csrf_ok,
    logout_csrf_ok,
    safe_next,
    session_viewer,
    sign_session,
    signed_in,
)
from sluicegate.server.pages.view import answers_in_html, message, redirect, render
from sluicegate.server.wiring import ServerState, state_of

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(answers_in_html)])

_MAX_TOKEN = 1024
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


async def _login_form(
    request: Request, st: ServerState, *, next_path: str, error: str = "", status: int = 200
) -> Response:
    """The sign-in page, with its CSRF pair: the nonce cookie (kept if the browser has a
    well-formed one, so two open tabs both work) and the form field signed over it."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    fresh = not (16 <= len(nonce) <= 64 and set(nonce) <= _NONCE_CHARS)
    if fresh:
        nonce = secrets.token_urlsafe(24)
    response = render(
        "login.html",
        status=status,
        viewer=await signed_in(request, st),
        next=next_path,
        error=error,
        csrf=login_csrf(st.secret_key, nonce),
    )
    if fresh:  # SameSite=Strict: a post from another site does not even carry it
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            path="/login",
            secure=_https(request, st),
            httponly=True,
            samesite="strict",
        )
    return response


def _refused(title: str, text: str, link: tuple[str, str]) -> Response:
    return message(title, text, status=403, links=[link])


@router.get("/login")
async def login_page(request: Request, next: str = "") -> Response:
    """Sign in with a review token."""
    return await _login_form(request, state_of(request), next_path=safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Check the token and start a session (its cookie never holds the token)."""
    st = state_of(request)
    # Before the token is even looked at: a post from elsewhere learns nothing and signs no
    # one in (login CSRF would sign the victim in as the attacker's reviewer).
    if not from_this_site(request, st) or not login_csrf_ok(
        st.keys.verifying, request.cookies.get(LOGIN_COOKIE), csrf
    ):
        return _refused(
            "Sign-in refused",
            "This sign-in did not come from this site's sign-in form, or the form expired; "
            "nobody was signed in. Open the sign-in page and try again.",
            ("/login", "Sign in"),
        )
    token = token.strip()
    info = (
        await st.writer.read(st.store.token_info, token) if 0 < len(token) <= _MAX_TOKEN else None
    )
    if info is None or info.scope != "review":
        error = (
            "That token is unknown or revoked, or it expired."
            if info is None
            else f"That is a {info.scope} token; sign in with a review token."
        )
        return await _login_form(request, st, next_path=safe_next(next), error=error, status=401)
    previous = await session_viewer(request, st)
    if previous is not None:  # signing in again: the old session ends, not lingers
        await st.writer.run(st.sessions.end, previous.binding)
    secret, _ = await st.writer.run(st.sessions.start, info, SESSION_TTL)
    response = redirect(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        sign_session(st.secret_key, secret),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        secure=_https(request, st),
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(
        LOGIN_COOKIE, path="/login", secure=_https(request, st), httponly=True, samesite="strict"
    )
    return response


@router.post("/logout")
async def logout(request: Request, logout_csrf: Annotated[str, Form()] = "") -> Response:
    """End the session, in the database (a replayed cookie finds nothing) and in the browser."""
    st = state_of(request)
    viewer = await session_viewer(request, st)
    if viewer is not None:
        if not from_this_site(request, st) or not logout_csrf_ok(
            st.keys.verifying, viewer, logout_csrf
        ):
            return _refused(
                "Sign-out refused",
                "This sign-out did not come from this site's own button; you are still "
                "signed in. Use the Sign out button at the top of a page.",
                ("/inbox", "Your inbox"),
            )
        await st.writer.run(st.sessions.end, viewer.binding)
    response = redirect("/login")
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_https(request, st), httponly=True, samesite="lax"
    )
    return response


def _https(request: Request, st: ServerState) -> bool:
    return request.url.scheme == "https" or st.settings.server_url.startswith("https://")
