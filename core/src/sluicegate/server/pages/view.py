"""Rendering the review pages: the Jinja2 environment, security headers, and view models.

Templates see plain, already formatted values (:class:`PageView`: the one
:class:`~sluicegate.notify.view.RequestView` every notification channel says, plus the page's
own facts), so they hold layout only. Autoescaping is on for every template: summaries,
context and comments are untrusted text and always appear as text. Every page answers a
server error as a page too (:func:`answers_in_html`), never as the API's JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from sluicegate import timefmt
from sluicegate.model import ApprovalRequest
from sluicegate.notify.view import RequestView
from sluicegate.server.errors import ERROR_PAGE, UNAVAILABLE
from sluicegate.server.pages.auth import Viewer
from sluicegate.server.wiring import ServerState

__all__ = [
    "CONTEXT_DISPLAY_BYTES",
    "PageView",
    "answers_in_html",
    "message",
    "redirect",
    "render",
    "request_view",
    "secure",
]

#: Context longer than this (pretty-printed, UTF-8) is cut on the page, with a note.
CONTEXT_DISPLAY_BYTES = 16 * 1024

_env = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Views hold aware UTC datetimes; the pages write them as every channel does.
_env.filters["when"] = timefmt.when

# The one inline stylesheet is allowed by its hash, so the policy needs no 'unsafe-inline'.
_STYLE_HASH = base64.b64encode(
    hashlib.sha256(_env.get_template("_style.css").render().encode()).digest()
).decode()

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Review links carry their token in the query: never let it leave in a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def secure(response: Response) -> Response:
    """Add the pages' security headers to ``response``."""
    response.headers.update(SECURITY_HEADERS)
    return response


def render(name: str, *, status: int = 200, viewer: Viewer | None = None, **ctx: Any) -> Response:
    """Render template ``name`` as an HTML response with the security headers."""
    html = _env.get_template(name).render(viewer=viewer, **ctx)
    return secure(HTMLResponse(html, status_code=status))


def message(
    title: str,
    text: str,
    *,
    status: int,
    viewer: Viewer | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> Response:
    """A page that says one thing (a result or an error), with links onwards."""
    return render(
        "message.html", status=status, viewer=viewer, title=title, text=text, links=list(links)
    )


def redirect(location: str) -> Response:
    """303 See Other to ``location`` (a path on this site)."""
    return secure(RedirectResponse(location, status_code=303))


async def answers_in_html(request: Request) -> None:
    """A dependency of every page router (sign-in included): a server error is answered as a
    page, not as JSON (async: a plain function would cost each page a hop to a thread)."""
    setattr(request.state, ERROR_PAGE, _error_page)


def _error_page(status: int, detail: str) -> Response:
    if detail == UNAVAILABLE:
        text = "The review server cannot reach its database. Try again in a minute."
        return message("Service unavailable", text, status=status)
    return message("Something went wrong", f"{detail[:1].upper()}{detail[1:]}.", status=status)


@dataclass(frozen=True)
class PageView(RequestView):
    """What the review page and the inbox show: the one :class:`RequestView` every channel
    says, plus what only a page has room for (the context, the requirement, when it opened)."""

    context: str
    context_note: str
    requirement: str
    created: str


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB"


def pretty_context(context: dict[str, Any], cap: int = CONTEXT_DISPLAY_BYTES) -> tuple[str, str]:
    """The context as indented JSON, cut to ``cap`` bytes, and a note when it was cut."""
    text = json.dumps(context, indent=2, sort_keys=True, ensure_ascii=False)
    data = text.encode()
    if len(data) <= cap:
        return text, ""
    shown = data[:cap].decode(errors="ignore")  # never split a character
    note = (
        f"Context cut for display: showing the first {_size(cap)} of {_size(len(data))}. "
        "The full context is in the API (GET /api/v1/requests/<id>)."
    )
    return shown, note


def _requirement(req: ApprovalRequest) -> str:
    noun = "approval" if req.required_approvals == 1 else "approvals"
    groups = ", ".join(req.groups) or "any reviewer"
    text = f"{req.required_approvals} {noun} from {groups}"
    if req.required_denials == 1:
        return text + "; one denial ends it"
    return text + f"; {req.required_denials} denials end it"


def request_view(st: ServerState, req: ApprovalRequest, now: datetime) -> PageView:
    """Format ``req`` for the pages: the channels' view of it, with the page-only facts."""
    view = RequestView.of(req, review_url=st.review_url(str(req.id)), now=now, classifier=st.policy)
    context, note = pretty_context(req.action.context)
    return PageView(
        **{f.name: getattr(view, f.name) for f in fields(RequestView)},
        context=context,
        context_note=note,
        requirement=_requirement(req),
        created=timefmt.when(req.created_at),
    )
