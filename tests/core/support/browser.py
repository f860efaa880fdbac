"""A reviewer's browser on the review pages of a running server, for the session tests.

It sends what a current browser sends with a form it submits from the page itself
(``Origin`` and ``Sec-Fetch-Site: same-origin``), keeps cookies, and reads the hidden fields
of the page it was shown.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden fields of every form on ``page`` (the last one of a name wins)."""
    return {m.group(1): html.unescape(m.group(2)) for m in _HIDDEN.finditer(page)}


def sign_in(client: TestClient, token: str, next_path: str = "") -> Any:
    """Sign in as a browser does, through an app's test client: open the sign-in page (it sets
    the form's CSRF cookie and field), then post its form."""
    fields = hidden_fields(client.get("/login").text)
    data = {"token": token, "next": next_path, "csrf": fields["csrf"]}
    return client.post("/login", data=data, follow_redirects=False)


class Browser:
    """One browser profile: its own cookie jar, on one server's pages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=30, follow_redirects=False)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get(self, path: str) -> httpx.Response:
        """Open a page (a top-level navigation)."""
        return self.client.get(path, headers={"Sec-Fetch-Site": "none"})

    def submit(self, path: str, data: dict[str, str]) -> httpx.Response:
        """Post a form from one of this site's pages, with the headers a browser adds."""
        return self.client.post(
            path, data=data, headers={"Origin": self.url, "Sec-Fetch-Site": "same-origin"}
        )

    def sign_in(self, token: str) -> httpx.Response:
        """Open the sign-in page and post its form with ``token``."""
        fields = hidden_fields(self.get("/login").text)
        return self.submit("/login", {**fields, "token": token})

    def sign_out(self) -> httpx.Response:
        """Press the Sign out button of the inbox page."""
        fields = hidden_fields(self.get("/inbox").text)
        return self.submit("/logout", {k: v for k, v in fields.items() if "csrf" in k})

    def session(self) -> str:
        """The session cookie's value (what a thief would copy)."""
        value = self.client.cookies.get("sluicegate_session")
        assert value, "no session cookie"
        return str(value)

    def decide(self, request_id: str, verdict: str, page: str | None = None) -> httpx.Response:
        """Post the decision form of the request's page: ``page`` as shown earlier (a tab
        left open), else the page opened now."""
        if page is None:
            page = self.get(f"/r/{request_id}").text
        return self.submit(f"/r/{request_id}/decide", {**hidden_fields(page), "verdict": verdict})


def with_cookie(url: str, session: str) -> Browser:
    """A fresh browser carrying only a copied session cookie (a replay)."""
    browser = Browser(url)
    browser.client.cookies.set("sluicegate_session", session)
    return browser
