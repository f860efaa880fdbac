"""A fake of the chat services Sluicegate talks to: real HTTP on 127.0.0.1, answering as they do.

Slack and Teams cannot run here, so this is the edge where a fake stands in (see STYLE.md). It
is a real HTTP server on a free port, run in a thread, that records every request and answers
the way the real service does:

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

Also here: builders of the requests Slack sends to *us* (:func:`block_actions_payload`,
:func:`view_submission_payload`, :func:`interaction_body`, :func:`signed_interaction`).

Imported by test modules after they put this folder on ``sys.path`` (tests/core is not a
package), like ``serverproc``.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from sluicegate.notify.signing import sign_slack_request

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
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

TEAM_ID = "T0SLUICE1"
APP_ID = "A0SLUICE1"
BOT_ID = "B0SLUICE1"
BOT_USER_ID = "U0SLUICEBOT"
#: The legacy verification token Slack still puts in interaction payloads (never trust it).
VERIFICATION_TOKEN = "legacy-verification-token"

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

_BLOCK_TYPES = {"section", "header", "actions", "context", "divider", "input", "image", "rich_text"}


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _text_problems(obj: Any, where: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: not a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: text must be a non-empty string"]
    out = []
    if _units(text) > limit:
        out.append(f"{where}: must be less than {limit + 1} characters")
    if "verbatim" in obj and obj["type"] != "mrkdwn":
        out.append(f"{where}: verbatim is only for mrkdwn")
    if "emoji" in obj and obj["type"] != "plain_text":
        out.append(f"{where}: emoji is only for plain_text")
    return out


def _element_problems(el: Any, where: str, action_ids: set[str]) -> list[str]:
    if not isinstance(el, dict):
        return [f"{where}: not an object"]
    out: list[str] = []
    action_id = el.get("action_id")
    if action_id is not None:
        if len(action_id) > 255:
            out.append(f"{where}.action_id: must be less than 256 characters")
        if action_id in action_ids:
            out.append(f"{where}.action_id: {action_id!r} is not unique in the message")
        action_ids.add(action_id)
    if el.get("type") == "button":
        out += _text_problems(el.get("text"), f"{where}.text", 75, plain_only=True)
        if len(el.get("value", "")) > 2000:
            out.append(f"{where}.value: must be less than 2001 characters")
        if len(el.get("url", "")) > 3000:
            out.append(f"{where}.url: must be less than 3001 characters")
        if el.get("style") not in (None, "primary", "danger"):
            out.append(f"{where}.style: must be primary or danger")
        confirm = el.get("confirm")
        if confirm is not None:
            out += _text_problems(
                confirm.get("title"), f"{where}.confirm.title", 100, plain_only=True
            )
            out += _text_problems(confirm.get("text"), f"{where}.confirm.text", 300)
            out += _text_problems(
                confirm.get("confirm"), f"{where}.confirm.confirm", 30, plain_only=True
            )
            out += _text_problems(confirm.get("deny"), f"{where}.confirm.deny", 30, plain_only=True)
    elif el.get("type") == "plain_text_input":
        if not 0 <= int(el.get("max_length", 3000)) <= 3000:
            out.append(f"{where}.max_length: must be at most 3000")
    elif el.get("type") in ("mrkdwn", "plain_text"):
        out += _text_problems(el, where, 3000)
    return out


def block_kit_problems(blocks: Any, *, max_blocks: int = 50) -> list[str]:
    """What Slack would refuse in ``blocks`` (``invalid_blocks``), as its messages say it."""
    if not isinstance(blocks, list):
        return ["blocks: must be an array"]
    out: list[str] = []
    if len(blocks) > max_blocks:
        out.append(f"blocks: must be less than {max_blocks + 1} items")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            out.append(f"{where}: unknown block type")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if len(block_id) > 255:
                out.append(f"{where}.block_id: must be less than 256 characters")
            if block_id in block_ids:
                out.append(f"{where}.block_id: {block_id!r} is not unique")
            block_ids.add(block_id)
        kind = block["type"]
        if kind == "header":
            out += _text_problems(block.get("text"), f"{where}.text", 150, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                out.append(f"{where}: a section needs text or fields")
            if "text" in block:
                out += _text_problems(block["text"], f"{where}.text", 3000)
            fields = block.get("fields", [])
            if len(fields) > 10:
                out.append(f"{where}.fields: must be less than 11 items")
            for j, f in enumerate(fields):
                out += _text_problems(f, f"{where}.fields/{j}", 2000)
            if "accessory" in block:
                out += _element_problems(block["accessory"], f"{where}.accessory", action_ids)
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                out.append(f"{where}.elements: must hold 1 to 25 items")
            for j, el in enumerate(elements):
                out += _element_problems(el, f"{where}.elements/{j}", action_ids)
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                out.append(f"{where}.elements: must hold 1 to 10 items")
            for j, el in enumerate(elements):
                out += _element_problems(el, f"{where}.elements/{j}", action_ids)
        elif kind == "input":
            out += _text_problems(block.get("label"), f"{where}.label", 2000, plain_only=True)
            out += _element_problems(block.get("element"), f"{where}.element", action_ids)
    return out


def view_problems(view: Any) -> list[str]:
    """What ``views.open`` would refuse in a modal view."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["view.type: must be modal"]
    out = _text_problems(view.get("title"), "view.title", 24, plain_only=True)
    for key in ("submit", "close"):
        if key in view:
            out += _text_problems(view[key], f"view.{key}", 24, plain_only=True)
    if len(view.get("private_metadata", "")) > 3000:
        out.append("view.private_metadata: must be less than 3001 characters")
    if len(view.get("callback_id", "")) > 255:
        out.append("view.callback_id: must be less than 256 characters")
    has_input = any(
        isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks", [])
    )
    if has_input and "submit" not in view:
        out.append("view.submit: required when the view has input blocks")
    return out + block_kit_problems(view.get("blocks", []), max_blocks=100)


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
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life

    def start(self) -> FakeChat:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fakechat", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (hanging answers are released at once)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

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
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """The Web API base URL, with the trailing slash slack_sdk needs (it uses urljoin)."""
        return self.url + "/api/"

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

    # -- internals used by the handler

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


class _Handler(BaseHTTPRequestHandler):
    owner: FakeChat
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.owner
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        call = Call(
            method=self.command,
            path=parts.path,
            query=dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            raw=raw,
            body=_parse(raw, content_type),
            content_type=content_type,
        )
        rule = fake._record(call)
        if rule is not None and rule.delay:
            fake._stopping.wait(rule.delay)
        if rule is not None and rule.status:
            self._fail(call, rule)
            return
        status, answer = self._route(call)
        self._send(call, status, answer)

    def _route(self, call: Call) -> tuple[int, Any]:
        path = call.path
        if path.startswith("/api/"):
            return self.owner._api(path[len("/api/") :], call)
        if path.startswith("/slack-webhook/"):
            if not isinstance(call.body, dict):
                return 400, "invalid_payload"
            problem = self.owner._message_problems(call.body)
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

    def _fail(self, call: Call, rule: _Rule) -> None:
        body = rule.body
        if body is None:
            if call.path.startswith("/api/"):
                error = "ratelimited" if rule.status == 429 else "internal_error"
                body = {"ok": False, "error": error}
            else:
                body = "rate_limited" if rule.status == 429 else "internal_error"
        self._send(call, rule.status, body, rule.headers)

    def _send(
        self, call: Call, status: int, answer: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        if isinstance(answer, (dict, list)):
            data = json.dumps(answer).encode()
            content_type = "application/json; charset=utf-8"
        elif isinstance(answer, bytes):
            data, content_type = answer, "text/plain; charset=utf-8"
        else:
            data, content_type = str(answer).encode(), "text/plain; charset=utf-8"
        # Recorded before the client can read the answer, so a test never sees it half done.
        self.owner._answered(call, status, answer)
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout): what we meant to say is recorded
            pass


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


# --------------------------------------------------------------------------------------------
# What Slack sends to us


def interaction_body(payload: Mapping[str, Any]) -> bytes:
    """The raw body Slack posts to the interactivity URL: form-encoded ``payload=<json>``."""
    return urllib.parse.urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def signed_interaction(
    payload: Mapping[str, Any], *, signing_secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of an interaction request as Slack sends it, signed."""
    body = interaction_body(payload)
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign_slack_request(signing_secret, body, ts),
    }
    return body, headers


def _user(user_id: str, username: str | None) -> dict[str, Any]:
    name = username or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def block_actions_payload(
    *,
    user_id: str,
    action_id: str,
    request_id: str,
    response_url: str,
    trigger_id: str = "1700000001.4242424242.0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    channel_id: str = "C0APPROVALS",
    message_ts: str = "1700000000.000100",
    username: str | None = None,
    block_id: str = "sluicegate_actions",
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack posts it when someone clicks a message button."""
    label = {"sluicegate_approve": "Approve", "sluicegate_deny": "Deny"}.get(action_id, "Button")
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": request_id,
        "type": "button",
        "action_ts": f"{int(float(message_ts)) + 1}.000001",
    }
    if action_id == "sluicegate_approve":
        action["style"] = "primary"
    elif action_id == "sluicegate_deny":
        action["style"] = "danger"
    return {
        "type": "block_actions",
        "user": _user(user_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": "sluicegate-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "data-approvals"},
        "message": {
            "type": "message",
            "subtype": "bot_message",
            "text": "Approval needed",
            "ts": message_ts,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "blocks": [],
        },
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def view_submission_payload(
    *,
    user_id: str,
    private_metadata: str,
    comment: str,
    callback_id: str = "sluicegate_deny_comment",
    username: str | None = None,
) -> dict[str, Any]:
    """A ``view_submission`` payload as Slack posts it when someone submits the deny modal."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "sluicegate-test"},
        "user": _user(user_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": "1700000002.4242424242.aabbccddeeff00112233445566778899",
        "view": {
            "id": "V0DENYVIEW1",
            "team_id": TEAM_ID,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "title": {"type": "plain_text", "text": "Deny request", "emoji": True},
            "blocks": [],
            "state": {
                "values": {
                    "comment": {"comment": {"type": "plain_text_input", "value": comment}},
                }
            },
            "hash": "1700000002.fakehash",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
