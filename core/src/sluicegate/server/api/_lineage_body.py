"""The lineage receiver's body: inflated, decoded and bounded before the event is read.

OpenLineage clients send JSON, gzipped when asked (openlineage-python's HTTP transport with
``compression: gzip`` sends ``Content-Encoding: gzip``; Marquez's server inflates it). What
would fail later, in the store or in a thread's stack, is refused here as bad input:

- a gzip body that inflates past the size limit (413, the limit the server puts on every body:
  a few kilobytes of zip bomb must not become gigabytes), or that is not gzip (400); another
  content coding is 415;
- a body that is not UTF-8 JSON (400);
- JSON nested deeper than :data:`MAX_DEPTH` (400): Python's decoder would raise RecursionError
  on the deepest bodies and the store's encoder on shallower ones;
- a string holding a lone surrogate (``"\\ud800"``), which JSON can escape but no database can
  store as UTF-8 text (400).

Every refusal is a :class:`~sluicegate.lineage.ingest.LineageRejected` whose ``reason`` says
which of these it was.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from sluicegate.lineage.ingest import LineageRejected

__all__ = ["MAX_DEPTH", "read_body"]

#: Deepest nesting of objects and arrays taken. OpenLineage events nest about a dozen levels
#: (a column-lineage facet), a schema facet two more per nested struct; well under Python's
#: recursion limit, which the JSON decoder and encoder share with the stack they run on.
MAX_DEPTH = 256

_GZIP = frozenset({"gzip", "x-gzip"})
# A \u escape of a surrogate: only then can a decoded string hold a lone one (the body itself
# is strict UTF-8, which has no surrogates), so only then is the exact check worth its cost.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_body(raw: bytes, content_encoding: str | None, *, limit: int) -> Any:
    """The JSON value ``raw`` holds, inflated per ``content_encoding``; raises
    LineageRejected."""
    data = _decoded(raw, content_encoding, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(400, "malformed_json", "the body is not UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise _refused(400, "malformed_json", "the body is not valid JSON") from None
    if _deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise _refused(
            400,
            "invalid_text",
            "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text",
        )
    return value


def _decoded(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return raw
    if len(codings) == 1 and codings[0] in _GZIP:
        return _gunzip(raw, limit)
    raise _refused(
        415,
        "unsupported_encoding",
        f"Content-Encoding {content_encoding!r} is not supported: send gzip or nothing",
    )


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Inflate every gzip member of ``raw``, never past ``limit`` + 1 bytes."""
    out = bytearray()
    rest = raw
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            # max_length bounds what one call may produce: the bomb is stopped, not inflated.
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as err:
            raise _refused(400, "bad_encoding", f"the body is not valid gzip: {err}") from None
        if len(out) > limit:
            raise _refused(413, "too_large", f"the body inflates to more than {limit} bytes")
        if not inflater.eof:
            raise _refused(400, "bad_encoding", "the gzip body is truncated")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (without recursing)."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _too_deep() -> LineageRejected:
    return _refused(400, "too_deep", f"the JSON nests deeper than {MAX_DEPTH} levels")


def _refused(status: int, code: str, detail: str) -> LineageRejected:
    return LineageRejected("", detail, status=status, reason=code, code=code)
