"""Every setting Sluicegate reads, and where it reads it from: one place.

Precedence, highest first (the OpenLineage client's order, so one rule fits both):

1. arguments (CLI options, or keywords to :func:`load_settings`);
2. the config file: ``--config FILE``, else ``$SLUICEGATE_CONFIG``, else ``./sluicegate.yaml``
   when it exists; YAML whose keys are the setting names below (nested for ``slack`` etc.);
3. environment variables ``SLUICEGATE_<NAME>``, with ``__`` for nesting
   (``SLUICEGATE_SLACK__BOT_TOKEN``);
4. the defaults written here.

Secrets are :class:`~pydantic.SecretStr`: they print as ``**********`` in reprs and logs.
An unknown key in the config file, or a value of the wrong type anywhere, is an error that
names where it came from, never a silent default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sluicegate.exceptions import ConfigError
from sluicegate.timefmt import parse_duration

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_DB_URL",
    "LineageSettings",
    "NotifySettings",
    "PrefectSettings",
    "Settings",
    "SlackSettings",
    "TeamsSettings",
    "WebhookSettings",
    "load_settings",
    "normalise_db_url",
]

DEFAULT_DB_URL = "sqlite:///./sluicegate.db"
#: A signing key shorter than this is refused: it could be guessed.
MIN_SECRET_KEY_LENGTH = 32
DEFAULT_CONFIG_FILE = "sluicegate.yaml"
ENV_PREFIX = "SLUICEGATE_"


def normalise_db_url(url: str) -> str:
    """Accept the URLs people write and return the one SQLAlchemy needs.

    ``postgres://`` and ``postgresql://`` mean psycopg 3 (the only PostgreSQL driver we ship
    with); anything but SQLite and PostgreSQL is refused rather than half-supported.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"database URL {url!r} has no scheme (sqlite:/// or postgresql://)")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return f"sqlite:///{rest.removeprefix('/')}" if rest.startswith("/") else f"sqlite://{rest}"
    raise ValueError(f"database URL scheme {scheme!r} is not supported (use sqlite or postgresql)")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlackSettings(_Section):
    """Slack: a bot token for buttons and in-place updates, or an incoming webhook for links."""

    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    webhook_url: SecretStr | None = None
    api_url: str = "https://slack.com/api/"
    #: Also send each eligible reviewer (with a ``slack_id`` in the policy) a direct message.
    dm_reviewers: bool = False


class TeamsSettings(_Section):
    """Microsoft Teams: a Workflows webhook that accepts Adaptive Cards."""

    webhook_url: SecretStr | None = None


class WebhookSettings(_Section):
    """A generic JSON webhook signed with HMAC-SHA256."""

    url: SecretStr | None = None
    secret: SecretStr | None = None


class NotifySettings(_Section):
    """How the dispatcher sends notifications (every channel, Prefect's resume included).

    ``timeout`` bounds each step of one HTTP call (connecting, sending, each wait for the
    answer), in seconds. ``lease`` is how long a claimed outbox row stays the dispatcher's
    without a renewal: the dispatcher renews it every third of that while it sends, so it
    lapses only when that server stops (a crash) or cannot write to the database; then another
    replica sends the row. Shorter means a quicker takeover after a crash, more renewals.

    ``channels`` switches on more channels of the registry (:mod:`sluicegate.notify.channels`)
    beyond those the sections above configure: each a mapping with a ``type`` (``console``,
    ``noop``, or the dotted path of a channel class of one's own, ``my_co.pager.PagerChannel``)
    and that channel's config (``timeout`` defaults to ``notify.timeout``). In the environment,
    ``SLUICEGATE_NOTIFY__CHANNELS`` holds them as a JSON list. A channel that cannot be imported
    or configured stops the server at startup, naming it.
    """

    timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    lease: Annotated[float, Field(ge=0.3, le=3600)] = 60.0
    # repr=False: a custom channel's config may hold its secrets, which must not reach a log.
    channels: list[dict[str, Any]] = Field(default_factory=list, repr=False)

    @field_validator("channels")
    @classmethod
    def _channel_types(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, config in enumerate(value):
            kind = config.get("type")
            if not isinstance(kind, str) or not kind.strip():
                raise ValueError(
                    f"channel {i} needs a type (a kind such as console, or a dotted path); "
                    f"it has the keys {sorted(config)}"
                )
        return value


class PrefectSettings(_Section):
    """Prefect's API: the server resumes a paused flow run the moment its gate is decided.

    ``api_url`` is what ``PREFECT_API_URL`` is for Prefect's own clients
    (``http://prefect:4200/api``; for Prefect Cloud
    ``https://api.prefect.cloud/api/accounts/<id>/workspaces/<id>``). Prefect Cloud takes an
    ``api_key`` (sent as a bearer token); a self-hosted server behind basic auth takes its
    ``auth_string`` (``user:password``, what ``PREFECT_API_AUTH_STRING`` holds). Unset, no
    flow run is resumed by the server and the gates fall back to their own long poll.
    """

    api_url: str | None = None
    api_key: SecretStr | None = None
    auth_string: SecretStr | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"Prefect API URL {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> PrefectSettings:
        if self.api_key is not None and self.auth_string is not None:
            raise ValueError(
                "set api_key (Prefect Cloud) or auth_string (self-hosted basic auth), not both"
            )
        if self.auth_string is not None and ":" not in self.auth_string.get_secret_value():
            raise ValueError("auth_string must be user:password")
        return self


class LineageSettings(_Section):
    """The lineage receiver (``POST /api/v1/lineage``).

    By default it stores what Marquez stores and checks what the graph needs; ``strict`` also
    refuses what the OpenLineage spec requires and Marquez lets through (no ``schemaURL``, a
    ``producer`` or facet ``_schemaURL`` that is not a URI, a facet without ``_producer``).
    """

    strict: bool = False


class Settings(BaseSettings):
    """Sluicegate's settings. Build them with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    db_url: str = Field(DEFAULT_DB_URL, description="SQLAlchemy URL of the store")
    policy: Path | None = Field(None, description="path of the policy file")
    server_url: str = Field(
        "", description="where clients and links reach the server; default http://HOST:PORT"
    )
    token: SecretStr | None = Field(None, description="a client's bearer token")
    secret_key: SecretStr | None = Field(
        None,
        description=(
            "signs review links, sessions and CSRF tokens (32+ characters); required on "
            "PostgreSQL; unset on SQLite: generated into <db file>.key (mode 0600)"
        ),
    )
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description=(
            "earlier secret keys, accepted to verify what they signed (links, sessions, CSRF) "
            "until it expires, never to sign; a list, or comma-separated in the environment"
        ),
    )
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        1, description="server processes sharing the port (`serve --workers`)"
    )
    sso_header: str | None = Field(
        None, description="trusted proxy header naming the signed-in reviewer (off when unset)"
    )
    link_ttl: str = Field("24h", description="how long a signed review link stays valid")
    expiry_interval: Annotated[float, Field(gt=0, le=60)] = Field(
        1.0, description="seconds between sweeps that expire overdue requests"
    )
    slack: SlackSettings = Field(default_factory=SlackSettings)
    teams: TeamsSettings = Field(default_factory=TeamsSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)

    @field_validator("db_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        return normalise_db_url(value)

    @field_validator("previous_secret_keys", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        # The environment gives one string: a JSON list, or keys separated by commas.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("secret_key", "previous_secret_keys")
    @classmethod
    def _key_length(cls, value: Any) -> Any:
        keys = value if isinstance(value, list) else [value]
        for key in keys:
            if key is not None and len(key.get_secret_value().strip()) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(
                    f"a secret key needs at least {MIN_SECRET_KEY_LENGTH} characters "
                    "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        return value

    @field_validator("link_ttl")
    @classmethod
    def _link_ttl(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _default_server_url(self) -> Settings:
        if not self.server_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            self.server_url = f"http://{host}:{self.port}"
        return self

    @field_validator("server_url")
    @classmethod
    def _server_url(cls, value: str) -> str:
        if not value:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"server URL {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Initial values (arguments over the config file, merged by load_settings), then the
        # environment; no .env or secrets files.
        return (init_settings, env_settings)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: cannot read: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None)
        raise ConfigError(
            f"config file {path}{line}: invalid YAML" + (f": {problem}" if problem else "")
        ) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of setting names to values")
    return data


def _where(
    loc: tuple[Any, ...], file_data: dict[str, Any], config: Path | None, args: dict[str, Any]
) -> str:
    top = str(loc[0]) if loc else ""
    name = "__".join(str(p) for p in loc).upper()
    if top in args:
        return f"argument {'.'.join(str(p) for p in loc)}"
    if top in file_data and config is not None:
        return f"config file {config}: {'.'.join(str(p) for p in loc)}"
    return f"environment variable {ENV_PREFIX}{name}"


def load_settings(config_file: str | Path | None = None, **arguments: Any) -> Settings:
    """Settings from arguments (``None`` means "not given"), the config file and the environment."""
    args = {k: v for k, v in arguments.items() if v is not None}
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file)
    elif os.environ.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(os.environ[f"{ENV_PREFIX}CONFIG"])
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        path = Path(DEFAULT_CONFIG_FILE)
    file_data = _read_config_file(path) if path is not None else {}

    try:
        # Arguments over the file, both passed in as initial values, which pydantic-settings
        # ranks above (and deep-merges with) the environment.
        return Settings(**{**file_data, **args})
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "is not a known setting"
        raise ConfigError(f"{_where(tuple(first['loc']), file_data, path, args)}: {msg}") from err
