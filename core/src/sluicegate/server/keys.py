"""The server's signing keys: where the current one comes from, and which old ones still verify.

Review links, session cookies and CSRF tokens are signed with one secret key. Whoever holds
it can sign in as any reviewer, so it is never kept in the database (a copy of the database,
a backup, a read-only account must not be enough):

- ``secret_key`` set (``SLUICEGATE_SECRET_KEY``): that key, on every database;
- unset on a SQLite file: a key generated once into ``<db file>.key`` beside it, readable by
  its owner only (mode 0600), created atomically so that processes starting together agree;
- unset on an in-memory SQLite database: a key for this process only;
- unset on PostgreSQL: refused at start, since replicas on other machines share nothing else.

``previous_secret_keys`` verify what they signed until it expires, and sign nothing: rotate by
moving the current key there and setting a new one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from sluicegate.exceptions import ConfigError
from sluicegate.settings import Settings

__all__ = ["SigningKeys", "key_file_of", "signing_keys"]


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs, and every key that verifies (the current one first)."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    @property
    def verifying(self) -> tuple[bytes, ...]:
        """The current key, then the previous ones."""
        return (self.current, *self.previous)


def key_file_of(url: URL) -> Path | None:
    """Where a generated key for the SQLite file of ``url`` lives; None for an in-memory one."""
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(f"{Path(database).expanduser().resolve()}.key")


def signing_keys(settings: Settings, url: URL) -> SigningKeys:
    """The keys of a server on the database at ``url``; :class:`ConfigError` when none can be
    had safely."""
    previous = tuple(k.get_secret_value().strip().encode() for k in settings.previous_secret_keys)
    if settings.secret_key is not None:
        return SigningKeys(settings.secret_key.get_secret_value().strip().encode(), previous)
    if url.get_backend_name() != "sqlite":
        raise ConfigError(
            f"a {url.get_backend_name()} database needs a secret key: set "
            "SLUICEGATE_SECRET_KEY (or secret_key in the config file), the same on every "
            "replica; make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    path = key_file_of(url)
    if path is None:  # nobody else can reach an in-memory database: a key for this process
        return SigningKeys(secrets.token_urlsafe(48).encode(), previous)
    return SigningKeys(_key_file(path), previous)


def _key_file(path: Path) -> bytes:
    """The key in ``path``, which is created with a new key if it does not exist."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    # Written to a private temporary file, then linked into place: link() fails if the name
    # exists, so a process starting at the same moment either wins or reads the winner's
    # whole key, never an empty or half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as err:
        raise ConfigError(f"cannot create the secret key file {path}: {err.strerror}") from err
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ConfigError(f"cannot read the secret key file {path}: {err.strerror}") from err
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode) or mode & 0o077:
            raise ConfigError(
                f"the secret key file {path} can be read by others (mode "
                f"{stat.S_IMODE(mode):04o}): chmod 600 it, or delete it to make a new key"
            )
        key = f.read().strip()
    if len(key) < 32:
        raise ConfigError(f"the secret key file {path} holds no usable key: delete it")
    return key
