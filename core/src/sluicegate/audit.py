"""The tamper-evident audit log, as its readers use it: record, verify, export.

The log is kept by the store (:mod:`sluicegate.store.audit`: the hash chain, appends in the
transaction of each change, verification; :mod:`sluicegate.store.audit_export`: JSON Lines
and CSV exports). This module gathers the names that the CLI, the server's audit routes and
auditors' own scripts use, so that they need not know how the store is laid out. It imports
the store and the store never imports it: there is no cycle between the two.
"""

from __future__ import annotations

from sluicegate.store.audit import (
    GENESIS,
    AuditEvent,
    VerifyResult,
    append,
    format_ts,
    row_hash,
    verify,
)
from sluicegate.store.audit_export import ExportFilter, csv_cell, export

__all__ = [
    "GENESIS",
    "AuditEvent",
    "ExportFilter",
    "VerifyResult",
    "append",
    "csv_cell",
    "export",
    "format_ts",
    "row_hash",
    "verify",
]
