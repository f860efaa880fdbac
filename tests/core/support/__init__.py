"""Shared test code for tests/core (and, for a real server, the adapter suites): fakes of the
remote services, real servers to talk to, and the checks several test folders use.

- :mod:`.paths`: the repository's folders and example files;
- :mod:`.serverproc`: free ports, clean environments, ``sluicegate serve`` in a subprocess or
  uvicorn in a thread;
- :mod:`.api`: the in-process API harness (ASGI test client) and the JSON error check;
- :mod:`.cli`: the installed ``sluicegate`` script run as a user runs it, and the one-line
  error check;
- :mod:`.browser`: a reviewer's browser on the review pages;
- :mod:`.fakehttp`: the local HTTP server (pytest-httpserver) every fake below is built on;
- :mod:`.fakechat`, :mod:`.slackpayloads`, :mod:`.blockkit`: Slack's and Teams' servers, the
  payloads Slack sends, and Block Kit's limits;
- :mod:`.fakeprefect`: Prefect's API, for the resume channel;
- :mod:`.lineage_backend`, :mod:`.lineage_schema`: a Marquez-like backend and the OpenLineage
  spec's validation;
- :mod:`.policytext`: policies written inline;
- ``certs/``: a self-signed certificate for 127.0.0.1 and localhost.

test_fakechat.py here checks the chat fake against Slack's own clients: a wrong fake would make
every notification test built on it prove nothing.

Fixtures are not here: they are in the conftest.py of the folder that covers their users.
"""
