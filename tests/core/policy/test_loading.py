"""Loading a policy file: every error is one line that names the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sluicegate.exceptions import PolicyError
from sluicegate.policy import load_policy

# ----------------------------------------------------------------- load errors


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            version: 1
            rules:
              - name: r1
                match: {actions: [export], colour: red}
                outcome: allow
            """,
            ":4: rules[0].match.colour: is not a known field",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice, groups: [s]}
            rules:
              - name: r1
                outcome: require
                require:
                  approvals: two
                  groups: [s]
            """,
            ":8: rules[0].require.approvals: Input should be a valid integer",
        ),
        (
            """
            version: 1
            rules:
              - outcome: allow
            """,
            ":3: rules[0].name: is required",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                outcome: allow
                outcome: deny
            """,
            ":5: rules[0].outcome: duplicate key",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                match: [
            """,
            ": invalid YAML",
        ),
        (
            """
            version: 2
            rules: []
            """,
            ":1: version: Input should be 1",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice, groups: [s]}
            rules:
              - name: r1
                outcome: require
                require: {approvals: 2, groups: [s]}
            """,
            ":7: rules[0].require.approvals: needs 2 approvals but groups ['s'] have 1 reviewer(s)",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice, groups: [s]}
            rules:
              - name: r1
                outcome: require
                require: {groups: [nobody]}
            """,
            ":7: rules[0].require.groups[0]: group 'nobody' has no reviewers",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                outcome: require
            """,
            ":3: rules[0]: outcome require needs a require block",
        ),
        (
            """
            version: 1
            rules:
              - {name: r1, outcome: allow}
              - {name: r1, outcome: deny}
            """,
            ":4: rules[1].name: rule name 'r1' is used twice",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice}
              - {id: alice}
            """,
            ":4: reviewers[1].id: reviewer id 'alice' is defined twice",
        ),
        (
            """
            version: 1
            rules:
              - {name: r1, outcome: allow, notify: ['email:x@y']}
            """,
            ":3: rules[0].notify: notify target 'email:x@y' must start with one of "
            "slack:, teams:, webhook:",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                outcome: require
                require: {groups: [s], timeout: 1 week}
            """,
            ":5: rules[0].require.timeout: duration '1 week' is not like",
        ),
        ("- just a list\n", ":1: a policy is a YAML mapping"),
    ],
)
def test_malformed_policy_fails_in_one_line_naming_file_line_and_field(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nowhere\.yaml: no such file"):
        load_policy(tmp_path / "nowhere.yaml")
