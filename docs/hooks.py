"""MkDocs hook: the HTTP API reference is the OpenAPI document the server itself serves.

At build time it builds the real FastAPI app (``sluicegate.server.create_app``, on a throwaway
SQLite database and the example policy) and writes ``app.openapi()`` to a temporary file; the
``[OAD(openapi.json)]`` tag in ``api.md`` is pointed at that file before neoteroi's OAD plugin
renders it. Nothing is copied by hand, so the page cannot drift from the server.

The build fails (``mkdocs build`` exits non-zero) when the app cannot be built: a broken
server must not publish a stale reference.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
TAG = "[OAD(openapi.json)]"

_built: dict[str, Path] = {}


def _openapi_document(folder: Path) -> dict[str, Any]:
    from sluicegate.server import create_app
    from sluicegate.settings import load_settings

    # The document depends on settings (the SSO header adds a security scheme): none from the
    # builder's shell or a ./sluicegate.yaml may leak in, so every build documents the same API.
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLUICEGATE_", "OPENLINEAGE"))
    }
    config = folder / "sluicegate.yaml"
    config.write_text("{}\n", encoding="utf-8")
    with mock.patch.dict(os.environ, clean, clear=True):
        settings = load_settings(
            config,
            db_url=f"sqlite:///{folder / 'docs.db'}",
            policy=str(ROOT / "examples" / "policy.yaml"),
        )
        app = create_app(settings)
    try:
        return app.openapi()
    finally:
        app.state.sluicegate.store.close()


def on_config(config: Any) -> Any:
    on_shutdown()  # `mkdocs serve` builds again on every change: one folder at a time
    folder = Path(tempfile.mkdtemp(prefix="sluicegate-docs-"))
    try:
        document = _openapi_document(folder)
        path = folder / "openapi.json"
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _built["folder"] = folder
    _built["openapi"] = path
    return config


# Before neoteroi's OAD plugin (priority 0) reads the tag.
@event_priority(50)
def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if TAG in markdown:
        return markdown.replace(TAG, f"[OAD({_built['openapi']})]")
    return markdown


def on_shutdown() -> None:
    folder = _built.pop("folder", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
