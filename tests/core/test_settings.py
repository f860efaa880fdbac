"""Settings: arguments, then the config file, then SLUICEGATE_* variables, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluicegate.exceptions import ConfigError
from sluicegate.settings import DEFAULT_DB_URL, load_settings, normalise_db_url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SLUICEGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./sluicegate.yaml unless a test writes one


def test_defaults() -> None:
    s = load_settings()
    assert s.db_url == DEFAULT_DB_URL
    assert s.slack.api_url == "https://slack.com/api/"
    assert s.token is None and s.policy is None


def test_precedence_arguments_then_file_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf.yaml"
    config.write_text("db_url: sqlite:///from-file.db\nserver_url: https://file.example\n")
    monkeypatch.setenv("SLUICEGATE_DB_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("SLUICEGATE_SERVER_URL", "https://env.example")
    monkeypatch.setenv("SLUICEGATE_PORT", "9000")
    s = load_settings(config, db_url="sqlite:///from-arg.db", port=None)
    assert s.db_url == "sqlite:///from-arg.db"  # argument beats file and env
    assert s.server_url == "https://file.example"  # file beats env
    assert s.port == 9000  # env beats the default; a None argument means "not given"


def test_nested_environment_variables_and_file_sections_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sluicegate.yaml").write_text("slack: {api_url: 'http://127.0.0.1:9/api/'}\n")
    monkeypatch.setenv("SLUICEGATE_SLACK__BOT_TOKEN", "xoxb-very-secret")
    s = load_settings()  # ./sluicegate.yaml is found by default
    assert s.slack.api_url == "http://127.0.0.1:9/api/"
    assert s.slack.bot_token is not None
    assert s.slack.bot_token.get_secret_value() == "xoxb-very-secret"
    assert "xoxb-very-secret" not in repr(s) and "xoxb-very-secret" not in str(s)


def test_notify_channels_from_the_file_or_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().notify.channels == []
    config = tmp_path / "conf.yaml"
    config.write_text(
        "notify:\n  channels:\n    - {type: console}\n"
        "    - {type: my_co.pager.PagerChannel, api_key: pager-very-secret}\n"
    )
    listed = load_settings(config).notify.channels
    assert listed == [
        {"type": "console"},
        {"type": "my_co.pager.PagerChannel", "api_key": "pager-very-secret"},
    ]
    # A custom channel's config may hold its secret: never in a repr.
    assert "pager-very-secret" not in repr(load_settings(config))
    monkeypatch.setenv("SLUICEGATE_NOTIFY__CHANNELS", '[{"type": "noop"}]')
    assert load_settings().notify.channels == [{"type": "noop"}]


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("port: 7000\n")
    monkeypatch.setenv("SLUICEGATE_CONFIG", str(other))
    assert load_settings().port == 7000


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"file": "db_urll: x\n"}, "conf.yaml: db_urll: is not a known setting"),
        ({"file": "slack: {bot_tokn: x}\n"}, "conf.yaml: slack.bot_tokn: is not a known setting"),
        (
            {"file": "port: 1\nhost: a: b\n"},
            "conf.yaml:2: invalid YAML: mapping values are not allowed here",
        ),
        ({"file": "- a\n"}, "must be a mapping"),
        (
            {"env": ("SLUICEGATE_PORT", "eighty")},
            "environment variable SLUICEGATE_PORT: Input should be a valid integer",
        ),
        (
            {"env": ("SLUICEGATE_DB_URL", "mysql://db")},
            "SLUICEGATE_DB_URL: database URL scheme 'mysql' is not supported",
        ),
        (
            {"env": ("SLUICEGATE_NOTIFY__CHANNELS", '[{"kind": "console"}]')},
            "SLUICEGATE_NOTIFY__CHANNELS: channel 0 needs a type",
        ),
        (
            {"file": "notify: {channels: [console]}\n"},
            "conf.yaml: notify.channels.0: Input should be a valid dictionary",
        ),
        (
            {"env": ("SLUICEGATE_SERVER_URL", "ftp://x")},
            "SLUICEGATE_SERVER_URL: server URL 'ftp://x' must start with http",
        ),
    ],
)
def test_bad_settings_name_where_they_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: dict[str, object], message: str
) -> None:
    config = None
    if "file" in setup:
        config = tmp_path / "conf.yaml"
        config.write_text(str(setup["file"]))
    if "env" in setup:
        name, value = setup["env"]  # type: ignore[misc]
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("sqlite:///./x.db", "sqlite:///./x.db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
    ],
)
def test_db_urls_are_normalised(url: str, expected: str) -> None:
    assert normalise_db_url(url) == expected


def test_db_url_without_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="has no scheme"):
        normalise_db_url("./sluicegate.db")
