"""Forms that change who is signed in are CSRF-protected, and no answer can be sniffed.

A page on another site posts to ``/login`` (login CSRF: the victim is signed in as the
attacker's reviewer, and what they then do is recorded under that name) or ``/logout``; a
browser sends such a post with ``Origin`` and ``Sec-Fetch-Site: cross-site`` and without the
sign-in page's cookie. Every answer, JSON ones included, says ``X-Content-Type-Options:
nosniff``. Through a real ``sluicegate serve``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sluicegate.store import Store
from tests.core.support.browser import Browser, hidden_fields
from tests.core.support.serverproc import POLICY, ServerProcess, running

EVIL = "https://evil.example"


class Site:
    """The running server and the tokens of the people involved."""

    def __init__(self, server: ServerProcess, tokens: dict[str, str]) -> None:
        self.server = server
        self.url = server.url
        self.tokens = tokens


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("csrf")
    db = f"sqlite:///{folder}/sluicegate.db"
    with Store(db) as store:
        tokens = {
            "pipeline": store.create_token("airflow-prod", "request"),
            "alice": store.create_token("alice", "review"),
            "erin": store.create_token("erin", "review"),  # the attacker's own reviewer
        }
    server = ServerProcess(db, POLICY, folder, name="csrf")
    with running(server):
        server.start()
        yield Site(server, tokens)


def signed_in_as(browser: Browser) -> str | None:
    """Whom the inbox greets, or None when it sends the browser to sign in."""
    r = browser.get("/inbox")
    if r.status_code == 303:
        return None
    assert r.status_code == 200, r.text
    for name in ("alice", "erin"):
        if f"<span>{name}</span>" in r.text:
            return name
    raise AssertionError(r.text)


def no_session_cookie(r: httpx.Response) -> bool:
    return not any(c.startswith("sluicegate_session=") for c in r.headers.get_list("set-cookie"))


def test_a_sign_in_posted_from_another_site_signs_nobody_in(site: Site) -> None:
    with Browser(site.url) as victim:
        # The attacker's page: a form that posts the attacker's own review token to /login.
        r = victim.client.post(
            "/login",
            data={"token": site.tokens["erin"], "next": "/inbox"},
            headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        )
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("text/html")
        assert "Sign-in refused" in r.text
        assert no_session_cookie(r)
        assert signed_in_as(victim) is None


def test_a_sign_in_is_refused_whenever_the_browser_says_it_came_from_elsewhere(
    site: Site,
) -> None:
    token = site.tokens["erin"]
    with Browser(site.url) as victim:
        # Even with a genuine cookie and field (say, planted from a sibling subdomain):
        # the browser's own word on where the post came from is what counts.
        fields = hidden_fields(victim.get("/login").text)
        for headers in (
            {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
            {"Origin": "https://reviews.evil.example", "Sec-Fetch-Site": "same-site"},
            {"Origin": EVIL},  # an older browser: no Sec-Fetch-Site
            {"Origin": "null"},  # a sandboxed frame
        ):
            r = victim.client.post("/login", data={**fields, "token": token}, headers=headers)
            assert r.status_code == 403, headers
            assert no_session_cookie(r)
        # Without the cookie, or with a field made for another cookie: refused as well.
        other = Browser(site.url)
        with other:
            foreign = hidden_fields(other.get("/login").text)["csrf"]
        for data in ({"token": token}, {"token": token, "csrf": foreign}):
            r = victim.submit("/login", data)
            assert r.status_code == 403
            assert no_session_cookie(r)
        assert signed_in_as(victim) is None
        # The form itself, posted from its page, signs in.
        assert victim.sign_in(site.tokens["alice"]).status_code == 303
        assert signed_in_as(victim) == "alice"


def test_sign_out_needs_its_token_and_this_site(site: Site) -> None:
    with Browser(site.url) as alice:
        assert alice.sign_in(site.tokens["alice"]).status_code == 303
        # Another site's page posts to /logout: refused, and alice stays signed in.
        for data, headers in (
            ({}, {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}),
            ({}, {}),
            ({"logout_csrf": "forged"}, {"Origin": site.url, "Sec-Fetch-Site": "same-origin"}),
        ):
            r = alice.client.post("/logout", data=data, headers=headers)
            assert r.status_code == 403, (data, headers)
            assert r.headers["content-type"].startswith("text/html")
            assert signed_in_as(alice) == "alice"
        token = hidden_fields(alice.get("/inbox").text)["logout_csrf"]
        r = alice.client.post(
            "/logout",
            data={"logout_csrf": token},
            headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        )
        assert r.status_code == 403
        assert signed_in_as(alice) == "alice"
        # Her own Sign out button works.
        assert alice.sign_out().status_code == 303
        assert signed_in_as(alice) is None


def test_every_answer_says_nosniff(site: Site) -> None:
    def nosniff(r: httpx.Response) -> None:
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], (r.url, r.headers)

    auth = {"Authorization": f"Bearer {site.tokens['pipeline']}"}
    with httpx.Client(base_url=site.url, timeout=30) as c:
        answers = [
            c.get("/api/v1/requests", headers=auth),  # 200 JSON
            c.get("/api/v1/requests"),  # 401 JSON
            c.get("/api/v1/requests/nope", headers=auth),  # 404 JSON
            c.post("/api/v1/requests", headers=auth, json={"action": 1}),  # 422 JSON
            c.post("/api/v1/requests", headers=auth, content=b"{" * (2 * 1024 * 1024)),  # 413
            c.get("/healthz"),
            c.get("/readyz"),
            c.get("/metrics"),
            c.get("/openapi.json"),
            c.get("/login"),  # a page: its own security headers, still one nosniff
            c.get("/no/such/path"),
        ]
    expected = [200, 401, 404, 422, 413, 200, 200, 200, 200, 200, 404]
    assert [r.status_code for r in answers] == expected
    for r in answers:
        nosniff(r)
    assert answers[0].headers["content-type"] == "application/json"


def test_the_sign_in_page_sets_its_form_cookie_for_this_site_only(site: Site) -> None:
    with Browser(site.url) as browser:
        r = browser.get("/login")
    (cookie,) = [c for c in r.headers.get_list("set-cookie") if c.startswith("sluicegate_login=")]
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/login"} <= attributes
    assert hidden_fields(r.text)["csrf"]
