"""A channel many people read carries no one's identity (issue 17, item 4).

Found this way: the Slack incoming webhook and the Teams card posted one signed "Review as X"
link per eligible reviewer into a channel everyone reads, and the job's owner, with no token
and no cookie, followed alice's and bob's links and approved her own request 2-of-2.

Here a real server (``sluicegate serve``) posts to Slack's incoming webhook, Teams' Workflows
webhook and a generic receiver, all played by ``fakechat``. A client holding everything those
received (every URL in every payload) opens each URL, follows every link and submits every
form it meets, as the job's owner would, with no token and no cookie of its own: it must
record no decision. A reviewer who signs in on the same page with a review token still can.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from sluicegate.store import Store
from tests.core.support.fakechat import FakeChat
from tests.core.support.serverproc import PII_EXPORT, POLICY, ServerProcess, running

#: carol owns the job and is a data steward: she must never count towards her own request.
REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}
_URL = re.compile(r"https?://[^\s\"'<>|\\]+")


@dataclass
class Form:
    """One HTML form as a browser would submit it."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    #: (name, value) of each named submit button.
    buttons: list[tuple[str, str]] = field(default_factory=list)


class Page(HTMLParser):
    """The links and forms of one HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[Form] = []
        self._form: Form | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "get").lower())
            self.forms.append(self._form)
        elif self._form is not None and tag in ("input", "button", "textarea") and a.get("name"):
            kind = a.get("type", "submit" if tag == "button" else "text").lower()
            if kind == "submit":
                self._form.buttons.append((a["name"], a.get("value", "")))
            else:
                self._form.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def urls_in(payloads: list[Any]) -> list[str]:
    """Every URL anywhere in what the channels received, as a reader could copy it."""
    found = _URL.findall(html.unescape(json.dumps(payloads)))
    return list(dict.fromkeys(u.rstrip(".,)") for u in found))


def replay(server: str, start: list[str], limit: int = 80) -> list[str]:
    """Open every URL of ``server`` in ``start``, follow every link and submit every form met
    (approving first), with a fresh client: no token, no cookie but what the server sets.
    Returns the URLs opened."""
    opened: list[str] = []
    queue = list(start)
    with httpx.Client(follow_redirects=True, timeout=30) as client:

        def read(answer: httpx.Response) -> None:
            page = Page(answer.text)
            queue.extend(urljoin(str(answer.url), href) for href in page.links)
            for form in page.forms:
                target = urljoin(str(answer.url), form.action)
                choices = sorted(form.buttons, key=lambda b: b[1] != "approve") or [None]
                for choice in choices:
                    data = {**form.fields, **(dict([choice]) if choice else {})}
                    if form.method == "post":
                        queue_answer = client.post(target, data=data)
                    else:
                        queue_answer = client.get(target, params=data)
                    queue.extend(
                        urljoin(str(queue_answer.url), h) for h in Page(queue_answer.text).links
                    )

        while queue and len(opened) < limit:
            url = queue.pop(0)
            if url in opened or not url.startswith(server):
                continue
            opened.append(url)
            read(client.get(url))
    return opened


def test_a_client_holding_all_the_shared_channels_received_decides_nothing(
    sqlite_url: str, tmp_path: Path, chat: FakeChat
) -> None:
    env = {
        "SLUICEGATE_SLACK__WEBHOOK_URL": chat.slack_webhook_url(),
        "SLUICEGATE_TEAMS__WEBHOOK_URL": chat.teams_webhook_url(),
        "SLUICEGATE_WEBHOOK__URL": chat.hook_url(),
        "SLUICEGATE_WEBHOOK__SECRET": "hook-secret",
    }
    server = ServerProcess(sqlite_url, POLICY, tmp_path, env=env).start()
    with running(server), Store(sqlite_url) as store:
        pipeline = server.client(store.create_token("airflow-prod", "request"))
        r = pipeline.post(
            "/api/v1/requests",
            json={"idempotency_key": "k-shared", "action": PII_EXPORT, "requester": REQUESTER},
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert r.json()["required_approvals"] == 2

        received = [
            *chat.wait_for("/slack-webhook/", 1, timeout=15),
            *chat.wait_for("/teams-webhook/", 1, timeout=15),
            *chat.wait_for("/hook/", 1, timeout=15),
        ]
        urls = urls_in([c.body for c in received])
        page = f"{server.url}/r/{rid}"
        assert page in urls  # every channel points at the review page

        opened = replay(server.url, urls)
        assert page in opened
        req = pipeline.get(f"/api/v1/requests/{rid}").json()
        assert req["decisions"] == [], (req["decisions"], [u for u in urls if "?" in u])
        assert req["status"] == "pending"

        # The same page still serves a reviewer who proves who she is: sign in, then decide.
        alice = store.create_token("alice", "review")
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            answer = browser.get(page)
            (login,) = Page(answer.text).forms
            answer = browser.post(
                urljoin(str(answer.url), login.action), data={**login.fields, "token": alice}
            )
            assert answer.url == page, answer.text
            (decide,) = [f for f in Page(answer.text).forms if "/decide" in f.action]
            answer = browser.post(
                urljoin(page, decide.action), data={**decide.fields, "verdict": "approve"}
            )
            assert answer.status_code == 200, answer.text
        req = pipeline.get(f"/api/v1/requests/{rid}").json()
        assert [(d["reviewer"], d["channel"]) for d in req["decisions"]] == [("alice", "web")]
