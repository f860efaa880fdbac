"""Single-use links: the nonces of signed review links, each usable once across replicas.

A signed review link carries a nonce. Using the link records the nonce here, so a link decides
once; the table's primary key makes a second use fail on every replica alike, even when two
arrive at the same moment.
"""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from sluicegate.model import utcnow
from sluicegate.store.schema import used_links
from sluicegate.store.transactions import Transactions

__all__ = ["use_link"]


def use_link(tx: Transactions, nonce: str, request_id: str, reviewer: str) -> bool:
    """``Store.use_link``: mark ``nonce`` used; False if it was used before."""
    try:
        with tx.write() as conn:
            if conn.execute(select(used_links.c.nonce).where(used_links.c.nonce == nonce)).first():
                return False
            conn.execute(
                insert(used_links).values(
                    nonce=nonce, request_id=request_id, reviewer=reviewer, used_at=utcnow()
                )
            )
            return True
    except IntegrityError:
        return False  # another replica used it at the same moment
