"""The PostgreSQL status listener: it hears every replica's NOTIFY, and stops when asked.

A stop that came while a notification had just been delivered once left psycopg's
``notifies()`` generator suspended with the connection's lock held, and the server's shutdown
waited for that lock for ever. These tests stop the listener in the middle of a burst of
notifications, again and again, and expect it to end within a second or two each time.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from sqlalchemy import create_engine

from sluicegate.server.long_polls import StatusHub, listen_postgres
from sluicegate.store import STATUS_CHANNEL


def _conninfo(url: str) -> str:
    return create_engine(url).url.set(drivername="postgresql").render_as_string(False)


async def _notify_until(conninfo: str, stop: asyncio.Event, ids: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            ids.append(f"req-{i}")
            await conn.execute("SELECT pg_notify(%s, %s)", (STATUS_CHANNEL, f"req-{i}"))
            i += 1
            await asyncio.sleep(0)


async def _stop_during_a_burst(url: str) -> tuple[float, set[str]]:
    heard: set[str] = set()

    class Recording(StatusHub):
        def publish(self, request_id: str) -> None:
            heard.add(request_id)
            super().publish(request_id)

    hub = Recording()
    hub.bind(asyncio.get_running_loop())
    stop, sent_stop = asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(listen_postgres(create_engine(url), hub, stop))
    sent: list[str] = []
    sender = asyncio.create_task(_notify_until(_conninfo(url), sent_stop, sent))
    deadline = time.monotonic() + 10
    while len(heard) < 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    began = time.monotonic()
    stop.set()
    listener.cancel()  # as the server's lifespan does
    await asyncio.wait({listener}, timeout=10)
    took = time.monotonic() - began
    sent_stop.set()
    await sender
    return took, heard


@pytest.mark.parametrize("trial", range(5))
def test_the_listener_hears_notifications_and_stops_promptly_in_a_burst(
    pg_url: str, trial: int
) -> None:
    took, heard = asyncio.run(_stop_during_a_burst(pg_url))
    assert len(heard) >= 20, f"the listener heard {len(heard)} notifications"
    assert took < 3, f"the listener took {took:.1f} s to stop (trial {trial})"
