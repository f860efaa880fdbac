"""Every error Sluicegate raises on purpose.

The hierarchy is small on purpose, so that a boundary (the CLI, the HTTP error handler, an
adapter) can map it to one exit code or status code without knowing every case::

    SluicegateError                   base: catch this at a boundary
    ├── ConfigError                   a setting or config file is wrong
    ├── PolicyError                   the policy file is malformed (names file, line, field)
    ├── ActionError                   an action / request payload is malformed
    │   └── DatasetError              a declared dataset cannot be named the OpenLineage way
    ├── StoreError                    the database failed or cannot be reached
    │   └── MigrationError            the schema could not be brought up to date
    ├── NotFoundError                 a request (or other object) does not exist
    ├── ForbiddenError                this identity may not do that (self-approval, ineligible)
    ├── ForeignRequestError           a request a run carries is not this gate's (client side)
    ├── TransitionError               an illegal status transition (e.g. approved -> denied)
    │   └── ConflictError             a compare-and-set lost: someone else changed it first
    ├── AuditError                    the audit log cannot be read or written
    └── ClientError                   the server answered with an error (client side)
        └── UnreachableError          the server could not be reached

Messages name the bad value and where it came from, in one line, because they are shown to
users as is: the CLI prints ``str(err)`` and exits 2.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActionError",
    "AuditError",
    "ClientError",
    "ConfigError",
    "ConflictError",
    "DatasetError",
    "ExpiredError",
    "ForbiddenError",
    "ForeignRequestError",
    "MigrationError",
    "NotFoundError",
    "PolicyError",
    "SluicegateError",
    "StoreError",
    "TransitionError",
    "UnreachableError",
]


class SluicegateError(Exception):
    """Base class of every error Sluicegate raises on purpose."""


class ConfigError(SluicegateError):
    """A setting, an environment variable or the config file holds a bad value."""


class PolicyError(SluicegateError):
    """The policy file cannot be read or does not validate.

    ``str()`` is one line: ``FILE:LINE: FIELD: what is wrong``.
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, field: str = ""
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        where = path or "<policy>"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        super().__init__(text)


class ActionError(SluicegateError):
    """An action, requester or request payload is malformed."""


class DatasetError(ActionError):
    """A declared dataset (an orchestrator's asset, a URI, a dict) cannot be given its
    OpenLineage namespace and name. Raised rather than guessing a name that no policy rule
    knows, which the policy's default could let through; the message names the value, where it
    was declared and how to declare it instead."""


class StoreError(SluicegateError):
    """The database failed, or cannot be reached."""


class MigrationError(StoreError):
    """The database schema could not be brought up to date."""


class NotFoundError(SluicegateError):
    """The object asked for does not exist."""


class ForbiddenError(SluicegateError):
    """The identity is known but may not do this: self-approval, not eligible, not the owner."""


class ForeignRequestError(SluicegateError):
    """A request handed to a gate (a run launched for an approved request carries its id) was
    not opened by this gate: another orchestrator, another step, or another action. Nothing
    runs on it; ``reason`` says which one differs."""

    def __init__(self, request_id: str, step: str, reason: str) -> None:
        super().__init__(
            f"the run names request {request_id} for step {step!r}, but {reason}; nothing runs"
        )
        self.request_id = request_id
        self.step = step
        self.reason = reason


class TransitionError(SluicegateError):
    """A status change the status machine does not allow (terminal states are final)."""


class ExpiredError(TransitionError):
    """A decision came after the deadline: the request has just been ended as expired.

    ``request`` is the request as that expiry left it (committed before this is raised).
    """

    def __init__(self, message: str, request: Any = None) -> None:
        super().__init__(message)
        self.request = request


class ConflictError(TransitionError):
    """A compare-and-set lost: the request changed between reading and writing it."""


class AuditError(SluicegateError):
    """The audit log cannot be read or written."""


class ClientError(SluicegateError):
    """The server answered an API call with an error (``{"error", "detail"}``)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status} {error})" if status else detail)
        self.status = status
        self.error = error
        self.detail = detail

    @property
    def transient(self) -> bool:
        """Whether asking again may get another answer: an unreachable server, or a 5xx that is
        not one of Sluicegate's lasting faults (``internal``: a bug, logged by the server;
        ``misconfigured``). ``unavailable`` (503: the database) and a 5xx from anything in front
        of the server may pass. A 4xx never does: the same request is refused the same way.
        The client and every adapter retry by this rule alone."""
        if isinstance(self, UnreachableError):
            return True
        return self.status >= 500 and self.error not in ("internal", "misconfigured")


class UnreachableError(ClientError):
    """The server could not be reached (connection refused, timeout, DNS)."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, "unreachable", detail)
