"""The counters service: ``LocalCounters`` shared by the workers of ``lockgate serve --workers N``.

Without Redis, each worker process would count on its own (a key with ``rpm_limit: 5`` served by two
workers let about ten requests a minute through).  ``serve`` starts this small process before the
workers; it holds the one ``LocalCounters`` behind a Unix socket in a private directory (0700) and
every worker talks to it with ``ServiceCounters`` (state/counters_client.py): one round trip per
admission, like ``RedisCounters``' one Lua call.  The same connections carry messages between the
workers (key-cache invalidations after a management change, deployment cooldowns).

Each connection's requests are answered in order, one at a time: admissions are atomic because the
service runs them on one thread, between two reads.  Parallel slots taken over a connection that
closes (a worker that died) are released at once instead of waiting for their lease.

Run as ``python -m lockgate.state.counters_service --socket PATH --parent PID``; it exits when its
parent (the supervisor) is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from .counters import PARALLEL_KIND, Admission, Item, LocalCounters
from .counters_wire import ADMIT, EVENT, FORGET, PUBLISH, REPLY, RESET, SETTLE, FrameBuffer, decode_items, frame

log = logging.getLogger("lockgate.counters.service")

PRUNE_EVERY = 10  # seconds between drops of windows that ended


class Service:
    def __init__(self) -> None:
        self.counters = LocalCounters()
        self.connections: set[Connection] = set()

    def admit(self, conn: Connection, rid: str, lease: float, items: list[Item]) -> list[Any]:
        adm: Admission = self.counters.admit_now(items, rid, lease)
        if adm.ok:
            slots = [it.key for it in items if it.kind == PARALLEL_KIND]
            if slots:
                conn.slots[rid] = slots
        return [REPLY, adm.ok, adm.failed, adm.values, adm.reset, adm.window]

    def settle(self, conn: Connection, rid: str, window: int, delta: float, cost: float, items: list[Item]) -> None:
        conn.slots.pop(rid, None)
        self.counters.settle_now(items, Admission(True, -1, [], 0.0, window), rid, delta, cost)

    def release(self, conn: Connection) -> None:
        """A closed connection's slots: its worker is gone, its requests with it."""
        for rid, keys in conn.slots.items():
            self.counters.release_slots(keys, rid)
        conn.slots.clear()

    def publish(self, sender: Connection, message: Any) -> None:
        data = frame([EVENT, message])
        for conn in self.connections:
            if conn is not sender and conn.transport is not None:
                conn.transport.write(data)


class Connection(asyncio.Protocol):
    def __init__(self, service: Service) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.frames = FrameBuffer()
        self.slots: dict[str, list[str]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = transport  # type: ignore[assignment]
        self.service.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.connections.discard(self)
        self.service.release(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        service = self.service
        try:
            messages = self.frames.feed(data)
        except ValueError as exc:
            log.warning("closing a connection that sent a bad frame (%s)", exc)
            self.transport.close()
            return
        out: list[bytes] = []
        for msg in messages:
            op = msg[0]
            if op == ADMIT:
                out.append(frame(service.admit(self, msg[1], msg[2], decode_items(msg[3]))))
            elif op == SETTLE:
                service.settle(self, msg[1], msg[2], msg[3], msg[4], decode_items(msg[5]))
                out.append(frame([REPLY]))
            elif op == FORGET:
                service.counters.forget_now(msg[1])
                out.append(frame([REPLY]))
            elif op == RESET:
                service.counters.reset_now(msg[1], msg[2])
                out.append(frame([REPLY]))
            elif op == PUBLISH:
                service.publish(self, msg[1])
        if out:
            self.transport.write(b"".join(out))


async def serve(path: str, parent: int | None, ready: Any = None) -> None:
    loop = asyncio.get_running_loop()
    service = Service()
    server = await loop.create_unix_server(lambda: Connection(service), path)
    os.chmod(path, 0o600)
    if ready is not None:
        ready()
    ticks = 0
    orphaned = False
    try:
        while True:
            await asyncio.sleep(1.0)
            if parent is not None and os.getppid() != parent:
                log.info("the supervisor is gone: counters service exits")
                orphaned = True
                return
            ticks += 1
            if ticks % PRUNE_EVERY == 0:
                service.counters.prune()
    finally:
        server.close()
        try:
            os.unlink(path)
            if orphaned:  # nobody else will remove the private directory
                os.rmdir(os.path.dirname(path))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lockgate-counters")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group: the workers still settle their requests while they
    # shut down, so the service ends only when the supervisor stops it (or is gone)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run

    def ready() -> None:
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    try:
        runner(serve(args.socket, args.parent, ready))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())


class ServiceProcess:
    """The supervisor's handle on the service: started before the workers, restarted if it dies
    (its counters start over, as after a restart of the gateway), stopped with the supervisor."""

    def __init__(self) -> None:
        import tempfile

        self.directory = tempfile.mkdtemp(prefix="lockgate-counters-")  # 0700: only this user
        self.path = os.path.join(self.directory, "counters.sock")
        self.process: Any = None
        self._stopping = False
        self._watcher: Any = None

    def start(self, timeout: float = 15.0) -> None:
        import threading

        self._spawn(timeout)
        self._watcher = threading.Thread(target=self._watch, name="lockgate-counters-watch", daemon=True)
        self._watcher.start()

    def _spawn(self, timeout: float) -> None:
        import select
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, "-m", "lockgate.state.counters_service", "--socket", self.path,
             "--parent", str(os.getpid())],
            stdout=subprocess.PIPE,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.process.kill()
            raise RuntimeError("the counters service did not start")

    def _watch(self) -> None:
        import time

        while not self._stopping:
            code = self.process.wait()
            if self._stopping:
                return
            log.error("the counters service exited (%s); restarting it: counters start over", code)
            time.sleep(0.5)
            try:
                self._spawn(15.0)
            except (OSError, RuntimeError) as exc:
                log.error("could not restart the counters service (%s)", exc)
                return

    def stop(self) -> None:
        import shutil

        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except Exception:  # noqa: BLE001
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
