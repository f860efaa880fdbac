"""Making channels from configuration: a registry of kinds, and dotted paths for the rest.

:class:`ChannelFactory` maps a ``type`` to a :class:`~.base.Channel` class, as
openlineage-python's transport factory does: ``{"type": "teams", "webhook_url": ...}`` makes
the built-in Teams channel, and ``{"type": "my_company.pager.PagerChannel", ...}`` imports a
channel of one's own (``module.Class`` or ``module:Class``). Built-in kinds are registered by
dotted path too, so a channel's dependencies (slack_sdk for Slack) load only when it is used.
:func:`register_channel` adds a kind to the default factory.

:class:`Channels` is what one server sends through: the channels its settings configure (each
built-in kind's :meth:`~.base.ChannelConfig.from_settings`, then each config listed in
``notify.channels``) plus any explicit configs. The planner and the dispatcher reach every
channel through it and name none. A channel that cannot be imported or configured is a
:class:`~sluicegate.exceptions.ConfigError` naming it: the server refuses to start rather than
run without a channel its operator switched on.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sluicegate.exceptions import ConfigError
from sluicegate.notify.channels.base import Change, Channel, scheme_of

if TYPE_CHECKING:
    from sluicegate.settings import Settings

__all__ = ["ChannelFactory", "Channels", "default_factory", "register_channel"]

_BUILT_IN = {
    "slack": "sluicegate.notify.channels.slack.SlackChannel",
    "teams": "sluicegate.notify.channels.teams.TeamsChannel",
    "webhook": "sluicegate.notify.channels.webhook.WebhookChannel",
    "prefect": "sluicegate.notify.channels.prefect.PrefectChannel",
    "console": "sluicegate.notify.channels.console.ConsoleChannel",
    "noop": "sluicegate.notify.channels.noop.NoopChannel",
}

_T = TypeVar("_T", bound=type[Channel])


def _import(path: str) -> Any:
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ConfigError(f"notification channel type {path!r} is not a kind or a dotted path")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as err:  # a boundary: whatever a custom module raises, fail closed
        raise ConfigError(
            f"notification channel type {path!r} cannot be imported: {type(err).__name__}: {err}"
        ) from err


class ChannelFactory:
    """Channel kinds by name; :meth:`create` makes one from a config dict."""

    def __init__(self) -> None:
        self.kinds: dict[str, type[Channel] | str] = {}

    def register(self, kind: str, channel: type[Channel] | str) -> None:
        """Make ``kind`` name ``channel`` (a class, or the dotted path of one)."""
        self.kinds[kind] = channel

    def resolve(self, kind: str) -> type[Channel]:
        """The channel class of a registered ``kind``, or of a dotted path."""
        found = self.kinds.get(kind, kind)
        cls = _import(found) if isinstance(found, str) else found
        if not inspect.isclass(cls) or not issubclass(cls, Channel):
            raise ConfigError(f"notification channel type {kind!r} is not a Channel subclass")
        return cls

    def create(self, config: Mapping[str, Any]) -> Channel:
        """The channel ``config["type"]`` names, configured by the rest of ``config``."""
        kind = config.get("type")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"a notification channel config needs a type: {sorted(config)}")
        cls = self.resolve(kind)
        config_obj = cls.config_class.from_dict(config)
        try:
            return cls(config_obj)
        except ConfigError:
            raise
        except Exception as err:  # a boundary: a custom channel's own check, fail closed
            raise ConfigError(
                f"notification channel {kind!r} cannot be configured: {type(err).__name__}: {err}"
            ) from err

    def from_settings(
        self, settings: Settings, extra: Iterable[Mapping[str, Any]] = ()
    ) -> Channels:
        """The channels ``settings`` configure: their sections', in registration order, then
        ``notify.channels``, then those of ``extra`` (explicit configs, custom kinds included)."""
        made: list[Channel] = []
        for kind in self.kinds:
            cls = self.resolve(kind)
            config = cls.config_class.from_settings(settings)
            if config is not None:
                made.append(cls(config))
        listed = [{"timeout": settings.notify.timeout, **c} for c in settings.notify.channels]
        made += [self.create(c) for c in (*listed, *extra)]
        return Channels(made)


_default = ChannelFactory()
for _kind, _path in _BUILT_IN.items():
    _default.register(_kind, _path)


def default_factory() -> ChannelFactory:
    """The factory that holds the built-in kinds and those of :func:`register_channel`."""
    return _default


def register_channel(cls: _T) -> _T:
    """Class decorator: register a channel class under its ``kind`` in the default factory."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    _default.register(cls.kind, cls)
    return cls


class Channels:
    """The channels one server sends through (see the module's docstring)."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self.all = tuple(channels)
        self._by_scheme: dict[str, Channel] = {}
        for channel in self.all:
            for scheme in channel.sends():
                if scheme in self._by_scheme:
                    raise ConfigError(
                        f"two notification channels send {scheme!r} targets: "
                        f"{self._by_scheme[scheme]!r} and {channel!r}"
                    )
                self._by_scheme[scheme] = channel

    @classmethod
    def from_settings(cls, settings: Settings, extra: Iterable[Mapping[str, Any]] = ()) -> Channels:
        """What :meth:`ChannelFactory.from_settings` of the default factory makes."""
        return _default.from_settings(settings, extra)

    @property
    def any(self) -> bool:
        """Whether any channel is configured (else nothing is planned or sent)."""
        return bool(self.all)

    def get(self, kind: str) -> Channel | None:
        """The channel of ``kind``, if configured."""
        return next((c for c in self.all if c.kind == kind), None)

    def accept(self, entry: str) -> str | None:
        """The outbox target a rule's ``notify`` entry becomes, or None when no configured
        channel takes it."""
        for channel in self.all:
            target = channel.accept(entry)
            if target is not None:
                return target
        return None

    def targets(self, change: Change) -> list[str]:
        """The targets every channel adds to ``change`` beyond the rule's."""
        return [t for channel in self.all for t in channel.targets(change)]

    def sending(self, target: str) -> Channel | None:
        """The channel that sends rows of ``target``, if configured."""
        return self._by_scheme.get(scheme_of(target))

    def close(self) -> None:
        """Close every channel (each opens again if used after)."""
        for channel in self.all:
            channel.close()
