"""Exports of the audit log: JSON Lines or CSV, streamed, filtered by time, dataset, job or
reviewer.

The CSV export is meant for spreadsheets, so a cell that one would evaluate as a formula
(actors, job names and dataset names come from pipelines) is written with a leading ``'``
(:func:`csv_cell`); the JSON Lines export carries every value exactly as stored and hashed.
Each exported row keeps ``prev_hash`` and ``hash``, so an auditor can re-check the chain
(:mod:`sluicegate.store.audit`) from the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from sqlalchemy import Engine, select

from sluicegate.exceptions import AuditError
from sluicegate.store.audit import COLUMNS, format_ts, stream
from sluicegate.store.db import READ
from sluicegate.store.schema import audit_events

__all__ = ["ExportFilter", "csv_cell", "export"]


def _str_or_null(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


@dataclass(frozen=True)
class ExportFilter:
    """Which rows to export; every field given must hold."""

    since: datetime | None = None
    until: datetime | None = None
    dataset: str | None = None  # a dataset name, or namespace::name
    job: str | None = None
    reviewer: str | None = None


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _rows(engine: Engine, flt: ExportFilter) -> Iterator[tuple[Any, ...]]:
    t = audit_events
    stmt = select(*[t.c[name] for name in COLUMNS]).order_by(t.c.seq)
    if flt.since:
        stmt = stmt.where(t.c.ts >= format_ts(flt.since))
    if flt.until:
        stmt = stmt.where(t.c.ts < format_ts(flt.until))
    if flt.job:
        stmt = stmt.where(t.c.job == flt.job)
    if flt.reviewer:
        stmt = stmt.where(t.c.actor == flt.reviewer)
    wanted = flt.dataset
    if wanted:
        # The SQL narrows; the exact check below decides (a name may also be a suffix of another).
        needle = wanted if "::" in wanted else f"::{wanted}"
        quoted = json.dumps(needle, ensure_ascii=False)  # as canonical_json stored it
        stmt = stmt.where(t.c.datasets.like(f"%{_like_escape(quoted[1:])}%", escape="\\"))
    with engine.connect().execution_options(**{READ: True}) as conn, conn.begin():
        for row in stream(conn, stmt):
            if wanted:
                try:
                    names = json.loads(row[6])
                except ValueError:
                    names = None
                if not isinstance(names, list):
                    # Tampered beyond JSON: the SQL text match chose it; show it to the auditor.
                    yield tuple(row)
                    continue
                if wanted not in names and not any(
                    isinstance(n, str) and n.split("::", 1)[-1] == wanted for n in names
                ):
                    continue
            yield tuple(row)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_or_string(text: str) -> str:
    """``text`` as is when it is one strict JSON value on one line, else as a JSON string.

    Untampered rows always are; anything else (a line break that would split the record, NaN,
    text that is not JSON at all) is exported as a quoted string, so every line stays exactly
    one valid record. (Whether the content is genuine is verify's job, not export's.)
    """
    if "\n" not in text and "\r" not in text:
        try:
            json.loads(text, parse_constant=_refuse_constant)
        except ValueError:
            pass
        else:
            return text
    return json.dumps(text)


#: What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula when
#: it comes first, once leading blanks and quote characters are passed over (OWASP, "CSV
#: Injection").
_FORMULA_START = frozenset("=+-@")
#: Control characters that start a formula, or hide one, when a cell begins with them.
_CONTROL_START = frozenset("\t\r\n\x00")
#: What a spreadsheet may pass over before the character it checks.
_PASSED_OVER = frozenset("'\"")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet evaluates: text a spreadsheet would take
    for a formula gets a leading ``'`` (OWASP's CSV-injection advice); anything else as is.

    A cell that already starts with ``'`` gets one too, so the escape can always be undone:
    the stored value is the cell with one leading ``'`` removed, if it has one.
    """
    if not isinstance(value, str) or not value:
        return value
    first = value[0]
    if first == "'" or first in _CONTROL_START:
        return "'" + value
    for ch in value:
        if ch.isspace() or ch in _PASSED_OVER:
            continue
        return "'" + value if ch in _FORMULA_START else value
    return value


def export(engine: Engine, out: TextIO, fmt: str = "jsonl", flt: ExportFilter | None = None) -> int:
    """Stream matching rows to ``out`` as JSON Lines or CSV; returns how many were written.

    Each row keeps ``prev_hash`` and ``hash``, so an auditor can re-check a full export
    (from JSON Lines as is; from CSV once :func:`csv_cell`'s leading ``'`` is removed).
    """
    flt = flt or ExportFilter()
    count = 0
    if fmt == "jsonl":
        q = _str_or_null
        buf: list[str] = []
        for seq, ts, kind, request_id, actor, job, datasets, data, prev_hash, digest in _rows(
            engine, flt
        ):
            # data and datasets are stored as canonical JSON: embed them as they are, once
            # checked to be JSON, so that a tampered value cannot smuggle extra fields in.
            buf.append(
                f'{{"seq":{seq},"ts":{q(ts)},"kind":{q(kind)},"request_id":{q(request_id)},'
                f'"actor":{q(actor)},"job":{q(job)},"datasets":{_json_or_string(datasets)},'
                f'"data":{_json_or_string(data)},"prev_hash":{q(prev_hash)},"hash":{q(digest)}}}\n'
            )
            count += 1
            if len(buf) >= 1000:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))
    elif fmt == "csv":
        # RFC 4180's CRLF: the csv module quotes a cell holding any character of the line
        # terminator, so a carriage return in a value (which a reader takes for the end of
        # the record) can never start a new row or hide a formula at the start of a cell.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in _rows(engine, flt):
            writer.writerow([csv_cell(cell) for cell in row])
            count += 1
    else:
        raise AuditError(f"export format {fmt!r} is not one of jsonl, csv")
    out.flush()
    return count
