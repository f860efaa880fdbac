"""The shape of a notification channel, after openlineage-python's transports.

A channel is a :class:`Channel` subclass with a ``kind`` (its name in configuration and the
scheme of its outbox targets), a ``config_class`` (a :class:`ChannelConfig`, built with
:meth:`~ChannelConfig.from_dict` or from the server's settings), and three duties:

- :meth:`Channel.accept`: the planner asks it whether a rule's ``notify`` entry is its own,
  and which outbox target that entry becomes;
- :meth:`Channel.targets`: the planner asks it which targets of its own a change adds beyond
  the rule's (a direct message to each reviewer, a paused flow run to resume);
- :meth:`Channel.send`: the dispatcher hands it one :class:`Delivery` (an outbox row and the
  request as it is now) and records what it answers; it raises
  :class:`~sluicegate.notify.errors.SendError` saying whether and when to try again.

The factory that makes channels from configs, built-in kinds and dotted paths alike, is
:mod:`sluicegate.notify.channels.factory`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from sluicegate.exceptions import ConfigError
from sluicegate.model import ApprovalRequest
from sluicegate.notify.view import RequestView

if TYPE_CHECKING:
    from sluicegate.policy import Reviewer
    from sluicegate.settings import Settings

__all__ = [
    "SKIPPED",
    "Change",
    "Channel",
    "ChannelConfig",
    "Delivery",
    "DeliveryContext",
    "scheme_of",
]

#: What :meth:`Channel.send` answers for a row it had nothing to send for (counted as
#: ``skipped``, not ``sent``): an update of a message that cannot be updated, for example.
SKIPPED: Mapping[str, Any] = {"skipped": True}

_C = TypeVar("_C", bound="ChannelConfig")


def scheme_of(target: str) -> str:
    """``slack`` for ``slack:#data-approvals``, ``teams`` for ``teams``."""
    return target.split(":", 1)[0]


class ChannelConfig(BaseModel):
    """A channel's configuration: validated, immutable, secrets as ``SecretStr``.

    Subclasses declare their fields as a pydantic model does; unknown keys are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Seconds each step of one HTTP call may take (``notify.timeout`` in the settings).
    timeout: float = 10.0

    @classmethod
    def from_dict(cls: type[_C], params: Mapping[str, Any]) -> _C:
        """The config in ``params`` (a factory's ``type`` and ``name`` keys are ignored);
        :class:`~sluicegate.exceptions.ConfigError` naming what is wrong."""
        given = {k: v for k, v in params.items() if k not in ("type", "name")}
        try:
            return cls.model_validate(given)
        except ValidationError as err:
            kind = params.get("type") or cls.__name__
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}"
                for e in err.errors()
            )
            raise ConfigError(f"notification channel {kind}: {problems}") from None

    @classmethod
    def from_settings(cls: type[_C], settings: Settings) -> _C | None:
        """The config the server's settings give this channel; None when they leave it off
        (the default: a channel made only from an explicit config)."""
        return None


@dataclass(frozen=True)
class Change:
    """One change of a request being planned, as the planner shows it to each channel."""

    #: ``request.created``, ``decision.recorded``, ``request.<end>``, ``reminder``,
    #: ``escalation`` (see :data:`~sluicegate.notify.view.EVENTS`).
    event: str
    request_id: str
    #: The request after the change; None for the sweep's reminders and escalations, which
    #: read no request.
    request: ApprovalRequest | None
    _people: Callable[[], Sequence[Reviewer]] = field(default=tuple, repr=False, compare=False)

    @cached_property
    def people(self) -> tuple[Reviewer, ...]:
        """The reviewers to tell in person: on creation those who may decide, on an
        escalation those it escalates to; nobody otherwise. Read only when asked for."""
        return tuple(self._people())


class DeliveryContext(Protocol):
    """What the dispatcher lends a channel while it sends (see :class:`Delivery`)."""

    def view_of(self, request: ApprovalRequest) -> RequestView:
        """The message view of ``request`` now, with its reviewers and review page."""
        ...

    def result_of(self, request_id: str, target: str) -> dict[str, Any] | None:
        """What the first send to ``target`` about ``request_id`` answered, if it was sent."""
        ...

    def own_link(self, request: ApprovalRequest, reviewer: str) -> str:
        """``reviewer``'s signed, single-use review link: for a message only they read."""
        ...

    def reviewer(self, reviewer_id: str) -> Reviewer | None:
        """The policy's reviewer with this id, or None."""
        ...


@dataclass(frozen=True)
class Delivery:
    """One outbox row to send: the change it tells of, where, and the request as it is now."""

    event: str
    #: The whole target, ``slack:#data-approvals``, ``slack-dm:alice``, ``teams``...
    target: str
    #: The same on every resend of this row: ``X-Sluicegate-Delivery`` (see
    #: :mod:`sluicegate.notify.signing`).
    delivery_id: str
    request: ApprovalRequest
    context: DeliveryContext = field(repr=False, compare=False)

    @property
    def address(self) -> str:
        """The target past its scheme: ``#data-approvals`` for ``slack:#data-approvals``."""
        return self.target.partition(":")[2]

    @cached_property
    def view(self) -> RequestView:
        """The request's message view, built on first use (a resume needs none)."""
        return self.context.view_of(self.request)

    def previous(self) -> dict[str, Any] | None:
        """What the first send to this target about this request answered, if it was sent."""
        return self.context.result_of(str(self.request.id), self.target)


class Channel:
    """A notification channel (see the module's docstring); subclasses set ``kind``,
    ``config_class`` and implement :meth:`send`."""

    #: The channel's name in configuration, and the scheme of its outbox targets.
    kind: ClassVar[str] = ""
    #: The target schemes this channel sends (more than ``kind`` alone for Slack's DMs).
    schemes: ClassVar[tuple[str, ...]] = ()
    config_class: ClassVar[type[ChannelConfig]] = ChannelConfig

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    @classmethod
    def sends(cls) -> tuple[str, ...]:
        """The target schemes of this channel: ``schemes``, else its ``kind``."""
        return cls.schemes or (cls.kind,)

    def accept(self, entry: str) -> str | None:
        """The outbox target that a rule's ``notify`` entry becomes here, or None when the
        entry is not this channel's. By default ``<kind>`` and ``<kind>:<anything>`` become
        ``<kind>``: the channel has one destination, set in its config."""
        return self.kind if scheme_of(entry) == self.kind else None

    def targets(self, change: Change) -> Sequence[str]:
        """Targets of this channel that ``change`` adds beyond the rule's; none by default."""
        return ()

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        """Send ``delivery``; what to remember of the answer (:data:`SKIPPED` when there was
        nothing to send). Raises :class:`~sluicegate.notify.errors.SendError`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the channel holds (connections); it may be used again after."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind!r}>"
