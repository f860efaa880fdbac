"""Who is calling: bearer tokens (scopes ``request``, ``review``, ``audit``) or a trusted SSO
header.

A ``request`` token opens and cancels gates and can never decide. Deciding needs a ``review``
identity whose principal is a reviewer in the policy; eligibility for a given request is the
workflow's to check (:mod:`sluicegate.workflow`). Reading the audit log (its export and its
verification) needs an ``audit`` token, and only that: a pipeline's token, a reviewer's token
and an SSO user are refused, so that who can read the whole trail is one explicit list.
Signed links are the review pages' business (:mod:`sluicegate.server.pages.auth`). Token
lookups are cached briefly (:mod:`sluicegate.server.tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from sluicegate.policy import Policy
from sluicegate.server.errors import ApiError
from sluicegate.server.wiring import state_of

__all__ = [
    "Identity",
    "identify",
    "require_any",
    "require_audit",
    "require_request",
    "require_review",
]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sluicegate"'}


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    principal: str
    scope: str  # request | review | audit
    via: str  # token | sso


async def identify(request: Request) -> Identity | None:
    """The caller, or None when it presents nothing. A bad token is a 401, not None."""
    st = state_of(request)
    header = request.headers.get("authorization")
    if header:
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "use 'Authorization: Bearer <token>'", _CHALLENGE)
        info = await st.tokens.lookup(token.strip())
        if info is None:
            raise ApiError(401, "unauthorized", "the token is unknown or revoked", _CHALLENGE)
        return Identity(_as_reviewer(st.policy, info.principal, info.scope), info.scope, "token")
    sso = st.settings.sso_header
    if sso:
        user = request.headers.get(sso, "").strip()
        if user:
            return Identity(_as_reviewer(st.policy, user, "review"), "review", "sso")
    return None


def _as_reviewer(policy: Policy, principal: str, scope: str) -> str:
    """A review principal as its reviewer's id in the policy: one person decides as one id
    however a token or the SSO header spells it (``Carol@Example.com`` is ``carol``)."""
    reviewer = policy.resolve(principal) if scope == "review" else None
    return principal if reviewer is None else reviewer.id


async def _need(request: Request) -> Identity:
    who = await identify(request)
    if who is None:
        raise ApiError(401, "unauthorized", "a bearer token is required", _CHALLENGE)
    return who


async def require_any(request: Request) -> Identity:
    """Any authenticated caller."""
    return await _need(request)


async def require_request(request: Request) -> Identity:
    """A pipeline: a ``request``-scoped token."""
    who = await _need(request)
    if who.scope != "request":
        raise ApiError(403, "forbidden", "this needs a request-scoped token")
    return who


async def require_review(request: Request) -> Identity:
    """A reviewer: a ``review``-scoped token or the SSO header; never a request token."""
    who = await _need(request)
    if who.scope != "review":
        raise ApiError(
            403, "forbidden", f"{_article(who.scope)} {who.scope}-scoped token can never decide"
        )
    return who


async def require_audit(request: Request) -> Identity:
    """An auditor: an ``audit``-scoped token, and nothing else (not a reviewer, not SSO)."""
    who = await _need(request)
    if who.scope != "audit":
        raise ApiError(
            403,
            "forbidden",
            f"reading the audit needs an audit-scoped token (this caller is {who.scope}-scoped)",
        )
    return who


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
