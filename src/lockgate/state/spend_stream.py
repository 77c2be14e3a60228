"""Spend records through Redis (shared mode: PostgreSQL + Redis): no record lives only on one disk.

In shared mode a request's ``SpendRecord`` is added to the Redis stream ``<prefix>spend`` inside the
Lua call that settles its counters, before the answer's last bytes go out (see
``RedisCounters.settle``).  Every instance runs a ``SpendStream`` consumer in the consumer group
``spend-writers``: it reads new entries (``XREADGROUP``), applies them to the database in batches
(``store.apply_spend`` ignores request ids it already has), then acknowledges and deletes them
(``XACK`` + ``XDEL``).  Entries a consumer read but never acknowledged (it was killed, its pod
replaced) are taken over by any live instance once they have been pending ``claim_idle`` seconds
(``XAUTOCLAIM``); applying them twice is harmless.  So an instance killed with -9 and replaced on an
empty disk loses nothing a client received.

A database outage only delays: entries stay in the stream (or pending) and are retried.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from .. import background
from .journal import decode

log = logging.getLogger("lockgate.spend")

GROUP = "spend-writers"
FIELD = b"r"


def consumer_name(journal_dir: str, journal_index: int) -> str:
    """Host, journal directory and journal index: unique among live processes (the journal is
    flock-claimed), the same for the process that takes a dead one's place on the same disk."""
    import hashlib
    import socket

    where = hashlib.sha256(journal_dir.encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{where}-{journal_index}"


class SpendStream:
    def __init__(
        self,
        client: Any,  # redis.asyncio.Redis
        store: Any,
        key: str,
        *,
        batch_size: int = 500,
        interval: float = 0.1,
        claim_idle: float = 10.0,
        max_backoff: float = 10.0,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.key = key
        self.batch_size = batch_size
        self.interval = interval
        self.claim_idle = claim_idle
        self.max_backoff = max_backoff
        # stable across restarts on the same disk (see consumer_name): a restarted process retries what
        # it had read and not applied at once, before any claim
        self.consumer = consumer or uuid.uuid4().hex[:16]
        self.applied_total = 0
        self.failures = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await self.client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop(), name="lockgate-spend-stream"),
                       loop.create_task(self._claim_loop(), name="lockgate-spend-claim")]

    async def close(self) -> None:
        await background.stop(self._tasks)
        # what this consumer read but did not apply stays pending: another instance claims it

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        backoff = self.interval
        retry = True  # first our own pending entries (none for a new consumer), then new ones
        while True:
            try:
                if retry:
                    entries = await self._read("0", None)
                    retry = bool(entries)
                else:
                    entries = await self._read(">", 2000)
                    if entries and len(entries) < self.batch_size:
                        await asyncio.sleep(self.interval)  # gather a batch, as the journal writer does
                        entries += await self._read(">", None, self.batch_size - len(entries))
                if entries:
                    await self._apply(entries)
                backoff = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database or Redis outage: retried, nothing lost
                self.failures += 1
                retry = True
                backoff = min(backoff * 2, self.max_backoff)
                log.warning("spend stream: %s; retrying in %.1f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)

    async def _read(self, start: str, block_ms: int | None, count: int | None = None) -> list[tuple[bytes, Any]]:
        reply = await self.client.xreadgroup(GROUP, self.consumer, {self.key: start},
                                             count=count or self.batch_size, block=block_ms)
        if not reply:
            return []
        return list(reply[0][1])

    async def _apply(self, entries: list[tuple[bytes, Any]]) -> None:
        ids = [entry_id for entry_id, _ in entries]
        records = []
        for _, fields in entries:
            raw = (fields or {}).get(FIELD)
            if raw is None:
                continue  # deleted meanwhile (XAUTOCLAIM answers such entries with no fields)
            try:
                records.append(decode(raw))
            except (ValueError, TypeError) as exc:
                log.error("spend stream: dropping an unreadable entry (%s)", type(exc).__name__)
        for i in range(0, len(records), self.batch_size):
            await self.store.apply_spend(records[i : i + self.batch_size])
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xack(self.key, GROUP, *ids)
            pipe.xdel(self.key, *ids)
            await pipe.execute()
        self.applied_total += len(records)

    # ------------------------------------------------------------------ taking over

    async def _claim_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.claim_idle / 2))
            try:
                await self.claim_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                log.warning("spend stream: claiming pending entries failed (%s)", type(exc).__name__)

    async def claim_once(self) -> int:
        """Apply the entries other consumers read and left pending for ``claim_idle`` seconds."""
        total = 0
        start = "0-0"
        while True:
            reply = await self.client.xautoclaim(self.key, GROUP, self.consumer, int(self.claim_idle * 1000),
                                                 start_id=start, count=self.batch_size)
            start, entries = reply[0], reply[1]
            if entries:
                await self._apply(list(entries))
                total += len(entries)
            if start in (b"0-0", "0-0"):
                break
        if total:
            log.info("spend stream: applied %d record(s) left pending by stopped instances", total)
        await self._forget_idle_consumers()
        return total

    async def _forget_idle_consumers(self) -> None:
        """Consumers with nothing pending, silent for an hour: instances that are gone."""
        for info in await self.client.xinfo_consumers(self.key, GROUP):
            name = info.get("name")
            if isinstance(name, bytes):
                name = name.decode()
            if name != self.consumer and not info.get("pending") and (info.get("idle") or 0) > 3_600_000:
                await self.client.xgroup_delconsumer(self.key, GROUP, name)
