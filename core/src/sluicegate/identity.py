# This module is about look-alike characters: its table and examples hold them on purpose.
# ruff: noqa: RUF001, RUF002, RUF003
"""One person, one identity: how free-text identities are read and compared.

Self-exclusion (the job owner, the user who triggered the run and the API principal can never
approve) is only as strong as the comparison behind it. Owners arrive as free text from every
orchestrator: Airflow's ``owner="carol, dave"``, Dagster's ``user:carol@example.com`` and
``team:stewards``, Prefect's ``owner=``, the API's ``requester.owner``. So this module:

* **normalizes** an identity: Unicode NFKC (full-width ``ｃａｒｏｌ`` is ``carol``), then drops
  invisible characters (format characters such as zero-width spaces, controls, variation
  selectors, blank fillers) and whitespace, then case-folds;
* **reads** a free-text field as every identity it may name (:func:`identities_in`): lists split
  on ``,`` ``;`` ``|`` ``/`` ``&``, brackets and quotes (and, read a second way, on anything
  that is not a letter, digit or ``._@+:-``), and on whitespace *as well as* joined
  across it (``Carol <carol@example.com>`` names ``carol`` and ``carol@example.com``, while
  ``car\\u200aol`` with a hair space still names ``carol``); Slack mentions ``<@U01CAROL|carol>``,
  a leading ``@``, RFC 5322 addresses (:func:`email.utils.getaddresses`) and prefixes such as
  ``mailto:`` or ``user:`` are unwrapped, and the unwrapped form is kept beside the original;
* **compares** by confusable *skeleton* (:func:`skeleton`), after Unicode TR39: accents are
  dropped, Cyrillic, Greek and other look-alikes map to the Latin letter they pass for, and the
  ASCII look-alikes ``0``/``o``, ``1``/``l``/``I``, ``rn``/``m``, ``vv``/``w``, ``cl``/``d`` meet.
  An email address also names its local part without a ``+tag``.

Every rule only ever *adds* names a field is read as; the comparison is built to fail closed:
when in doubt, it is the same person (excluded), never a different one. No full TR39 table is
installed, so the map below covers Latin, Greek and Cyrillic look-alikes, and any other
non-ASCII character that survives it is a wildcard standing for up to two characters:
``саrꝋl`` still excludes ``carol``. The cost is that a name in a script the map does not know
may exclude a reviewer whose identity has the same length; refusing a real look-alike
matters more. Reviewer identities themselves must be plain ASCII (:func:`identity_problem`,
checked when the policy loads), so the two sides never need the same table.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses
from functools import lru_cache

__all__ = [
    "Lookalikes",
    "identities_in",
    "identity_keys",
    "identity_problem",
    "lookalikes",
    "normalize",
    "skeleton",
]

# Characters that render as nothing (or as a blank) but are not Unicode whitespace or format
# characters: Unicode's Default_Ignorable_Code_Point set beyond category Cf, and the fillers.
_BLANKS = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)


def _invisible(ch: str) -> bool:
    return ch in _BLANKS or unicodedata.category(ch) in ("Cf", "Cc", "Cs", "Co", "Cn")


# In ASCII, NFKC changes nothing and the invisible characters are the controls.
_ASCII_DROP = re.compile(r"[\x00-\x20\x7f]+")


def _visible(text: str) -> str:
    """NFKC, without invisible characters and whitespace, case kept (the skeleton needs it)."""
    if text.isascii():  # the common case, ten times faster
        return _ASCII_DROP.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if not (ch.isspace() or _invisible(ch)))


def normalize(value: str) -> str:
    """``value`` as one identity: NFKC, without invisible characters or whitespace, case-folded.

    ``"ｃａｒ\\u200bol "`` and ``"Carol"`` both give ``"carol"``.
    """
    text = _visible(value)
    # Case folding can leave text that is not in NFKC form (and NFKC can undo a fold).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


# ------------------------------------------------------------------------- the skeleton

# Letters of other scripts (and Latin letters outside ASCII) that pass for Latin ones, after
# TR39's confusables.txt, looked up before case folding (Greek Η is an H, its lowercase η an n).
# Where unsure, a letter maps: mapping too much excludes too many, mapping too little lets a
# look-alike through.
_MAP: dict[str, str] = {
    # Greek capitals
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "l", "Κ": "k", "Λ": "a", "Μ": "m",
    "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "Θ": "o", "Ϲ": "c", "Ϳ": "j",
    # Greek small letters
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "θ": "o", "ι": "l", "κ": "k",
    "μ": "u", "ν": "v", "ο": "o", "π": "n", "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u",
    "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Cyrillic capitals
    "А": "a", "Б": "6", "В": "b", "Г": "r", "Е": "e", "З": "3", "И": "n", "К": "k", "Л": "n",
    "М": "m", "Н": "h", "О": "o", "П": "n", "Р": "p", "С": "c", "Т": "t", "У": "y", "Х": "x",
    "Ц": "u", "Ч": "4", "Ш": "w", "Щ": "w", "Ъ": "b", "Ы": "bl", "Ь": "b", "Э": "3", "Ю": "lo",
    "Я": "r", "Ђ": "h", "Є": "e", "Ѕ": "s", "І": "l", "Ј": "j", "Ћ": "h", "Ү": "y", "Һ": "h",
    "Ӏ": "l", "Ԛ": "q", "Ԝ": "w",
    # Cyrillic small letters
    "а": "a", "б": "6", "в": "b", "г": "r", "е": "e", "з": "3", "и": "u", "к": "k", "л": "n",
    "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x",
    "ц": "u", "ч": "4", "ш": "w", "щ": "w", "ъ": "b", "ы": "bl", "ь": "b", "э": "3", "ю": "lo",
    "я": "r", "ђ": "h", "є": "e", "ѕ": "s", "і": "l", "ј": "j", "ћ": "h", "ү": "y", "һ": "h",
    "ӏ": "l", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    # Latin letters outside ASCII that accents-off does not reduce
    "ı": "l", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ƀ": "b", "ɨ": "l", "ɑ": "a",
    "ɡ": "g", "ɩ": "l", "ʟ": "l", "ɪ": "l", "ɴ": "n", "ʀ": "r", "ʏ": "y", "ʜ": "h", "ʙ": "b",
    "ɢ": "g", "ᴀ": "a", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴊ": "j", "ᴋ": "k", "ᴍ": "m", "ᴏ": "o",
    "ᴘ": "p", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ꜱ": "s", "æ": "ae", "œ": "oe",
    "ŋ": "n", "ß": "ss", "ſ": "s",
    # ASCII look-alikes, in the case-folded form the comparison sees (I is i once folded)
    "0": "o", "1": "l", "i": "l", "|": "l",
}  # fmt: skip
# Letters of the same scripts that pass for no Latin letter: they keep an identity distinct.
# Any other non-ASCII character the map leaves is a wildcard (see the module docstring).
# (Compared case-folded: the capitals the map leaves fold to a small letter it maps or to these.)
_DISTINCT = frozenset("ζλξφψджф")
# Pairs that read as one letter; the one letter is the skeleton's form.
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def _mapped(text: str) -> str:
    return "".join(_MAP.get(ch, ch) for ch in text)


def skeleton(value: str) -> str:
    """The form two look-alike identities share: ``"Саrоl"`` and ``"caro1"`` give ``carol``.

    Non-ASCII characters that no rule maps are left in place; :func:`lookalikes` treats them.
    """
    text = _visible(value)
    if not text.isascii():
        # Accents off: decompose and drop every combining mark (é is e, й is и). Then map
        # before folding, where case still tells Greek Η (an H) from η (an n).
        text = "".join(
            ch for ch in unicodedata.normalize("NFKD", text) if unicodedata.category(ch)[0] != "M"
        )
        text = _mapped(text)
    text = _mapped(text.casefold())
    for pair, letter in _PAIRS:
        text = text.replace(pair, letter)
    return text


# ------------------------------------------------------------------------- reading fields

# What separates identities in a free-text field (never a character of an id or address).
_SEPARATORS = re.compile(r"[\s,;|/\\&<>()\[\]{}\"'`]+")
# The same without whitespace: the spans inside which whitespace is joined over too.
_SPANS = re.compile(r"[,;|/\\&<>()\[\]{}\"'`]+")
# Anything but a letter, digit or a character of an id or address: separators that scripts
# other than Latin use (``dave、carol``, ideographic comma), read as separators too.
_WORDS = re.compile(r"[^\w.@+:-]+")
# ``mailto:``, ``user:``, ``team:``, ``slack:``: a scheme-like prefix before the identity.
_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]{0,31}:(?=.)", re.IGNORECASE)
_EDGES = string.punctuation


def _forms(token: str) -> set[str]:
    """``token`` and every unwrapped form of it (edges, prefixes off), each :func:`_visible`."""
    out: set[str] = set()
    todo = [token]
    while todo:
        form = _visible(todo.pop())
        if not form or form in out:
            continue
        out.add(form)
        todo.append(form.strip(_EDGES))
        todo.append(_PREFIX.sub("", form, count=1))
    return out


@lru_cache(maxsize=4096)
def _named(text: str) -> frozenset[str]:
    text = unicodedata.normalize("NFKC", text)
    tokens: list[str] = _SEPARATORS.split(text) + _WORDS.split(text)
    # Whitespace may be the disguise rather than a separator (``car ol`` with a hair space).
    tokens.extend("".join(span.split()) for span in _SPANS.split(text))
    if any(c in text for c in '<"('):  # the rest of RFC 5322 is what the split reads
        tokens.extend(address for _, address in getaddresses([text]))
    names: set[str] = set()
    for token in tokens:
        names |= _forms(token)
    return frozenset(names)


def identities_in(text: str) -> frozenset[str]:
    """Every identity the free-text field ``text`` may name, each normalized.

    ``"Carol <carol@example.com>; <@U01DAVE|dave>"`` names ``carol``, ``carol@example.com``,
    ``@u01dave``, ``u01dave`` and ``dave``.
    """
    return frozenset(n for n in map(normalize, _named(text)) if n)


def _expanded(identity: str) -> set[str]:
    """An identity and, for an address, its local part, each also without a ``+tag``."""
    out = {identity}
    local, at, domain = identity.rpartition("@")
    if at and local:
        out.add(local)
        base = local.split("+", 1)[0]
        if base:
            out |= {base, f"{base}@{domain}"}
    return out


def identity_keys(*values: str | None) -> frozenset[str]:
    """The skeletons under which the identities ``values`` (a reviewer's) are recognized."""
    keys: set[str] = set()
    for value in values:
        if value and _visible(value):
            keys.update(skeleton(form) for form in _expanded(_visible(value)))
    return frozenset(keys)


# ------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Lookalikes:
    """Identities ready to compare with a reviewer's :func:`identity_keys`."""

    exact: frozenset[str]
    patterns: tuple[re.Pattern[str], ...] = ()

    def match(self, keys: frozenset[str]) -> bool:
        """True if any of these identities is, or may pass for, one of ``keys``."""
        if not self.exact.isdisjoint(keys):
            return True
        return any(p.fullmatch(key) for p in self.patterns for key in keys)


def _known(ch: str) -> bool:
    return ch.isascii() or ch in _DISTINCT


def _pattern(key: str) -> re.Pattern[str] | None:
    """A regular expression for a skeleton with characters no rule maps; None if it has none."""
    if all(map(_known, key)):
        return None
    # An unknown character may be a look-alike of one letter, of two, or of nothing at all.
    return re.compile("".join(re.escape(ch) if _known(ch) else ".{0,2}" for ch in key))


@lru_cache(maxsize=4096)
def _lookalikes(names: frozenset[str]) -> Lookalikes:
    exact: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for name in names:
        for form in _expanded(name):
            key = skeleton(form)
            pattern = _pattern(key)
            if pattern is None:
                exact.add(key)
            else:
                patterns.append(pattern)
    return Lookalikes(frozenset(exact), tuple(patterns))


def lookalikes(texts: Iterable[str | None]) -> Lookalikes:
    """Every identity the free-text fields ``texts`` may name, ready to compare.

    Each field is read as :func:`identities_in` reads it.
    """
    names: set[str] = set()
    for text in texts:
        if text:
            names |= _named(text)
    return _lookalikes(frozenset(names))


# ------------------------------------------------------------------------- reviewer identities


def identity_problem(value: str) -> str | None:
    """Why ``value`` cannot be a reviewer's id, email or Slack id; None if it can.

    A reviewer's identity must be what it looks like: plain ASCII without whitespace or
    invisible characters, so that no other spelling of it can be told apart from it.
    """
    for ch in value:
        if _invisible(ch):
            return f"holds an invisible character ({_describe(ch)})"
        if ch.isspace():
            return f"holds whitespace ({_describe(ch)})"
        if not ch.isascii():
            return (
                f"holds {ch!r} ({_describe(ch)}), which is not ASCII: letters of other "
                "scripts can pass for Latin ones"
            )
    if normalize(value) != value.casefold():
        return "is not the same after Unicode normalization"
    return None


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"
