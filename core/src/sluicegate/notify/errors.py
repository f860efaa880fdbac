"""How a channel's send fails: shared by the dispatcher and the channels it calls."""

from __future__ import annotations

__all__ = ["BACKOFF", "SendError"]

#: ``SendError.retry_after`` for "try again after the row's backoff" (2, 4, 8 ... s).
BACKOFF = -1.0


class SendError(Exception):
    """A failed send; ``retry_after`` None means it will not succeed by trying again."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
