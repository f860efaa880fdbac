"""A fake of the chat services Sluicegate talks to: real HTTP on 127.0.0.1, answering as they do.

(Over 400 lines: one class that answers each Slack Web API method the way Slack does, errors
included, which is what the notification tests rely on; the Block Kit checks and the payloads
Slack sends us live in their own modules.)

Slack and Teams cannot run here, so this is the edge where a fake stands in (see STYLE.md). It
is a real HTTP server on a free port (pytest-httpserver's, threaded, one catch-all handler),
that records every request and answers the way the real service does:

- Slack's Web API under ``/api/<method>`` (point ``slack_sdk.WebClient(token=...,
  base_url=fake.api_url)`` at it): ``chat.postMessage``, ``chat.update`` (only a message it
  posted, with the same token), ``chat.postEphemeral``, ``conversations.open``, ``views.open``
  and ``auth.test``. Errors come as Slack sends them: HTTP 200 with ``{"ok": false, "error":
  ...}`` (``invalid_auth``, ``message_not_found``, ``cant_update_message``,
  ``invalid_blocks``...). Blocks and views are checked against Block Kit's documented limits.
  It takes JSON bodies (token in ``Authorization: Bearer``) and form bodies (token in the
  header or in the form), as Slack does and as slack_sdk sends them.
- A Slack incoming webhook at ``/slack-webhook/<id>`` (200 ``ok``), a Teams Workflows webhook
  at ``/teams-webhook/<id>`` (202, empty), a generic receiver at ``/hook/<id>`` (200) and a
  Slack ``response_url`` at ``/slack-response/<id>`` (200 ``ok``).
- Failure injection: :meth:`FakeChat.fail_next` (any status; 429 comes with ``Retry-After``)
  and :meth:`FakeChat.hang_next`.

Re-exported from here, where the tests have always found them: the Block Kit checks
(:mod:`.blockkit`) and the builders of the requests Slack sends to *us* (:mod:`.slackpayloads`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from werkzeug import Request, Response

from .blockkit import block_kit_problems, view_problems
from .fakehttp import LocalHTTPServer
from .slackpayloads import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    block_actions_payload,
    interaction_body,
    signed_interaction,
    view_submission_payload,
)

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "SIGNING_SECRET",
    "TEAM_ID",
    "WEBHOOK_SECRET",
    "Call",
    "FakeChat",
    "block_actions_payload",
    "block_kit_problems",
    "channel_id",
    "interaction_body",
    "signed_interaction",
    "view_problems",
    "view_submission_payload",
]

#: The signing secret of the fake workspace's Slack app (the example of Slack's documentation).
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
#: The secret a server signs its generic webhook's deliveries with (see ``server_settings``).
WEBHOOK_SECRET = "hook-secret"

_ID = re.compile(r"^[CDG][A-Z0-9]{8,}$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")  # real ids are longer; the example policy's are short


def channel_id(name: str, prefix: str = "C") -> str:
    """The stable id the fake gives a channel name (``#data-approvals``) or a user's IM."""
    key = name.lstrip("#").lower()
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:10].upper()


# --------------------------------------------------------------------------------------------
# What the fake records


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lowercased
    raw: bytes
    #: The parsed body: a JSON value, a form as ``{name: value}``, or None when empty.
    body: Any
    content_type: str
    status: int | None = None  # None while it is being answered (e.g. hanging)
    answer: Any = None

    def header(self, name: str) -> str | None:
        """A request header, by name in any case."""
        return self.headers.get(name.lower())

    @property
    def args(self) -> dict[str, Any]:
        """A Web API call's arguments: query, then form or JSON body (as Slack reads them)."""
        out: dict[str, Any] = dict(self.query)
        if isinstance(self.body, dict):
            out.update(self.body)
        return out


@dataclass
class _Rule:
    prefix: str
    remaining: int
    status: int = 0  # 0: answer normally (after the delay)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


# --------------------------------------------------------------------------------------------
# Block Kit checks (the documented limits Slack enforces with invalid_blocks)

# --------------------------------------------------------------------------------------------
# The server


class FakeChat:
    """Slack's Web API, Slack and Teams webhooks and a generic receiver, on 127.0.0.1.

    Use as a context manager (or :meth:`start` / :meth:`stop`)::

        with FakeChat(bot_token="xoxb-test") as fake:
            client = WebClient(token="xoxb-test", base_url=fake.api_url)
            client.chat_postMessage(channel="#data-approvals", text="hi")
            assert fake.calls("/api/chat.postMessage")[0].args["text"] == "hi"
    """

    def __init__(
        self, bot_token: str = "xoxb-sluicegate-test", *, other_tokens: tuple[str, ...] = ()
    ) -> None:
        self.bot_token = bot_token
        #: Tokens of other apps in the same workspace: valid, but they did not post our messages.
        self.tokens = frozenset((bot_token, *other_tokens))
        self._calls: list[Call] = []
        self._rules: list[_Rule] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._stopping = threading.Event()
        self._server: LocalHTTPServer | None = None

    # -- life

    def start(self) -> FakeChat:
        """Listen on a free port of 127.0.0.1, answering each request in its own thread."""
        self._server = LocalHTTPServer(self._serve).begin()
        return self

    def stop(self) -> None:
        """Stop serving (hanging answers are released at once)."""
        self._stopping.set()
        if self._server is not None:
            self._server.end()

    def __enter__(self) -> FakeChat:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None, "FakeChat is not started"
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL, with the trailing slash slack_sdk needs (it uses urljoin)."""
        return self.url + "/api/"

    def server_settings(self, **more: Any) -> dict[str, Any]:
        """Settings (``load_settings`` keywords) that point a server's Slack bot, Teams and
        generic webhook channels at this fake; ``more`` adds or replaces sections."""
        return {
            "slack": {
                "bot_token": self.bot_token,
                "signing_secret": SIGNING_SECRET,
                "api_url": self.api_url,
            },
            "teams": {"webhook_url": f"{self.url}/teams-webhook/t1"},
            "webhook": {"url": f"{self.url}/hook/h1", "secret": WEBHOOK_SECRET},
            **more,
        }

    def slack_webhook_url(self, hook: str = "T0SLUICE1/B0HOOK/abc") -> str:
        """An incoming webhook URL."""
        return f"{self.url}/slack-webhook/{hook}"

    def teams_webhook_url(self, hook: str = "workflow-1") -> str:
        """A Teams Workflows webhook URL."""
        return f"{self.url}/teams-webhook/{hook}"

    def hook_url(self, hook: str = "receiver") -> str:
        """A generic webhook receiver URL."""
        return f"{self.url}/hook/{hook}"

    def response_url(self, hook: str = "T0SLUICE1/1/xyz") -> str:
        """A Slack ``response_url``."""
        return f"{self.url}/slack-response/{hook}"

    # -- failure injection

    def fail_next(
        self,
        path_prefix: str,
        *,
        times: int = 1,
        status: int = 500,
        retry_after: int | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``.

        A 429 carries ``Retry-After`` (``retry_after``, 1 by default) and Slack's
        ``ratelimited`` error. ``body`` replaces the default error body (JSON for ``/api/``,
        text elsewhere).
        """
        headers = {}
        if status == 429 or retry_after is not None:
            headers["Retry-After"] = str(1 if retry_after is None else retry_after)
        with self._lock:
            self._rules.append(_Rule(path_prefix, times, status=status, headers=headers, body=body))

    def hang_next(self, path_prefix: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` requests under ``path_prefix`` for ``seconds``, then answer
        them normally."""
        with self._lock:
            self._rules.append(_Rule(path_prefix, times, delay=seconds))

    # -- what happened

    def calls(self, path_prefix: str = "/") -> list[Call]:
        """The requests received under ``path_prefix``, in order."""
        with self._lock:
            return [c for c in self._calls if c.path.startswith(path_prefix)]

    def wait_for(self, path_prefix: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``count`` requests under ``path_prefix`` have been answered; return them.

        Raises AssertionError after ``timeout`` seconds, saying what did arrive.
        """
        deadline = time.monotonic() + timeout

        def ready() -> list[Call]:
            return [
                c for c in self._calls if c.path.startswith(path_prefix) and c.status is not None
            ]

        with self._lock:
            while len(found := ready()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [f"{c.method} {c.path} -> {c.status}" for c in self._calls]
                    raise AssertionError(
                        f"waited {timeout} s for {count} answered request(s) under "
                        f"{path_prefix!r}; got {len(found)}. All requests: {seen}"
                    )
                self._lock.wait(left)
            return found

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """The message at (``channel``, ``ts``) as it stands now (after updates)."""
        with self._lock:
            stored = self._messages[(channel, ts)]
            return {k: v for k, v in stored.items() if k != "token"}

    def messages(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every message posted through the Web API: (channel, ts, message)."""
        with self._lock:
            items = list(self._messages.items())
        for (channel, ts), stored in items:
            yield channel, ts, {k: v for k, v in stored.items() if k != "token"}

    # -- what the handler keeps

    def _record(self, call: Call) -> _Rule | None:
        with self._lock:
            self._calls.append(call)
            for rule in self._rules:
                if rule.remaining > 0 and call.path.startswith(rule.prefix):
                    rule.remaining -= 1
                    return rule
            return None

    def _answered(self, call: Call, status: int, answer: Any) -> None:
        with self._lock:
            call.status = status
            call.answer = answer
            self._lock.notify_all()

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1700000000 + n // 10000}.{(n % 10000) * 100:06d}"

    # -- serving

    def _serve(self, request: Request) -> Response:
        raw = request.get_data()
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        query = request.query_string.decode("latin-1")
        call = Call(
            method=request.method,
            path=request.path,
            query=dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in request.headers.items()},
            raw=raw,
            body=_parse(raw, content_type),
            content_type=content_type,
        )
        rule = self._record(call)
        if rule is not None and rule.delay:
            self._stopping.wait(rule.delay)
        if rule is not None and rule.status:
            return self._fail(call, rule)
        status, answer = self._route(call)
        return self._respond(call, status, answer)

    def _route(self, call: Call) -> tuple[int, Any]:
        path = call.path
        if path.startswith("/api/"):
            return self._api(path[len("/api/") :], call)
        if path.startswith("/slack-webhook/"):
            if not isinstance(call.body, dict):
                return 400, "invalid_payload"
            problem = self._message_problems(call.body)
            if problem:
                return 400, problem["error"]
            return 200, "ok"
        if path.startswith("/teams-webhook/"):
            # Workflows accepts anything that parses and runs the flow later: 202, no body.
            return (202, b"") if isinstance(call.body, dict) else (400, "Bad Request")
        if path.startswith("/hook/"):
            return 200, "ok"
        if path.startswith("/slack-response/"):
            return (200, "ok") if isinstance(call.body, dict) else (400, "invalid_payload")
        return 404, "not found"

    def _fail(self, call: Call, rule: _Rule) -> Response:
        body = rule.body
        if body is None:
            if call.path.startswith("/api/"):
                error = "ratelimited" if rule.status == 429 else "internal_error"
                body = {"ok": False, "error": error}
            else:
                body = "rate_limited" if rule.status == 429 else "internal_error"
        return self._respond(call, rule.status, body, rule.headers)

    def _respond(
        self, call: Call, status: int, answer: Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        if isinstance(answer, (dict, list)):
            data = json.dumps(answer).encode()
            content_type = "application/json; charset=utf-8"
        elif isinstance(answer, bytes):
            data, content_type = answer, "text/plain; charset=utf-8"
        else:
            data, content_type = str(answer).encode(), "text/plain; charset=utf-8"
        # Recorded before the client can read the answer, so a test never sees it half done.
        self._answered(call, status, answer)
        return Response(data, status=status, headers=dict(headers or {}), content_type=content_type)

    # -- Slack Web API

    def _api(self, method: str, call: Call) -> tuple[int, dict[str, Any]]:
        args = call.args
        token = args.pop("token", None)
        auth = call.header("authorization") or ""
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return 404, {"ok": False, "error": "unknown_method"}
        if not token:
            return 200, {"ok": False, "error": "not_authed"}
        if token not in self.tokens:
            return 200, {"ok": False, "error": "invalid_auth"}
        for key in ("blocks", "view", "attachments"):
            if isinstance(args.get(key), str):
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    return 200, {"ok": False, "error": f"invalid_{key}_format"}
        answer: dict[str, Any] = handler(token, args)
        return 200, answer

    def _resolve(self, channel: str) -> str:
        if _ID.match(channel):
            return channel
        if _USER.match(channel):
            return channel_id(channel, "D")
        return channel_id(channel)

    def _message_problems(self, args: dict[str, Any]) -> dict[str, Any] | None:
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            return {"ok": False, "error": "no_text"}
        if "blocks" in args:
            problems = block_kit_problems(args["blocks"])
            if problems:
                return {
                    "ok": False,
                    "error": "invalid_blocks",
                    "errors": problems,
                    "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]},
                }
        return None

    def _api_auth_test(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://sluicegate-test.slack.com/",
            "team": "Sluicegate Test",
            "user": "sluicegate",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        problem = self._message_problems(args)
        if problem:
            return problem
        cid, ts = self._resolve(channel), self._next_ts()
        message = {
            "type": "message",
            "text": args.get("text", ""),
            "blocks": args.get("blocks", []),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        with self._lock:
            self._messages[(cid, ts)] = {**message, "token": token, "edits": 0}
        return {"ok": True, "channel": cid, "ts": ts, "message": message}

    def _api_chat_update(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not _ID.match(channel):  # chat.update takes an id, never a name
            return {"ok": False, "error": "channel_not_found"}
        problem = self._message_problems(args)
        if problem:
            return problem
        with self._lock:
            stored = self._messages.get((channel, ts))
            if stored is None:
                return {"ok": False, "error": "message_not_found"}
            if stored["token"] != token:
                return {"ok": False, "error": "cant_update_message"}
            stored["text"] = args.get("text", stored["text"])
            if "blocks" in args:
                stored["blocks"] = args["blocks"]
            stored["edits"] += 1
            message = {k: v for k, v in stored.items() if k not in ("token", "edits")}
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message["text"],
            "message": message,
        }

    def _api_chat_postEphemeral(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        problem = self._message_problems(args)
        if problem:
            return problem
        return {"ok": True, "message_ts": self._next_ts()}

    def _api_conversations_open(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"ok": True, "channel": {"id": self._resolve(str(args["channel"]))}}
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        if not all(_USER.match(u) for u in users):
            return {"ok": False, "error": "user_not_found"}
        key = ",".join(sorted(users))
        return {"ok": True, "channel": {"id": channel_id(key, "D" if len(users) == 1 else "G")}}

    def _api_views_open(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        view = args.get("view")
        problems = view_problems(view)
        if problems:
            return {
                "ok": False,
                "error": "invalid_arguments",
                "response_metadata": {"messages": [f"[ERROR] {p}" for p in problems]},
            }
        assert isinstance(view, dict)
        opened = {
            "id": "V" + hashlib.sha256(str(args["trigger_id"]).encode()).hexdigest()[:10].upper(),
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.fakehash",
            "private_metadata": "",
            "callback_id": "",
            **view,
        }
        return {"ok": True, "view": opened}


def _parse(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == "application/json":
        try:
            return json.loads(raw)
        except ValueError:
            return None
    if content_type == "application/x-www-form-urlencoded":
        return dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
    try:
        return json.loads(raw)
    except ValueError:
        return None
