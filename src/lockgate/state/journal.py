"""The spend journal: every SpendRecord appended to a local file before the answer ends.

Layout: a directory holding ``spend-<n>.jsonl`` (one JSON record a line) and
``spend-<n>.ckpt`` (the byte offset up to which records were applied to the
database).  Each gateway process owns one journal, found by taking an exclusive
``flock`` on the first free ``n`` (so ``--workers N`` and several gateways on
one machine never share a file); the lock dies with the process, so at start a
process can also claim and replay the journals of processes that died.

Appends are copies into a shared memory map of the file, no system call and no
fsync: the page cache holds them, and it survives ``kill -9`` of the gateway (not a
power cut), as an ``os.write`` would.  The file is kept ``GROW`` bytes or more
ahead of its records, zero-filled (a sparse file): the records end at the first
NUL byte, which JSON text never contains.  The written pages count in the
process's resident memory until the journal is truncated, or every ``RELEASE``
bytes when it is not (a database outage).  A record torn by a crash mid-copy is
ended with a newline when the journal is opened again (it is then skipped as
invalid), so the records appended after it stay whole.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson

from ..governance.types import SpendRecord
from .timetext import utc_text

GROW = 1 << 20  # the map (and the file) grow by this much when an append reaches its end
# the pages written are released from the process every this many bytes; a journal rotated once
# applied (``spend_journal_rotate_mb``, 1 MB) never gets there: releasing cost ~3 % req/s when it did
RELEASE = 8 << 20
MAX_TAIL = 64 << 10  # a journal is rotated with up to this much not applied yet (copied to the new file)
_DT_FIELDS = ("start_time", "end_time")
log = logging.getLogger("lockgate.spend")


def encode(record: SpendRecord) -> bytes:
    """One line: the record's fields as a JSON array, in column order."""
    return orjson.dumps(tuple(record), option=orjson.OPT_APPEND_NEWLINE)


def decode(line: bytes) -> SpendRecord:
    data = orjson.loads(line)
    if isinstance(data, list):
        return SpendRecord(*data)
    # the first journal format (one JSON object a line, ISO times, metadata as an object): still replayed
    for name in _DT_FIELDS:
        data[name] = utc_text(datetime.fromisoformat(data[name]))
    data["metadata"] = orjson.dumps(data.get("metadata") or {}).decode()
    return SpendRecord(**data)


class Journal:
    """One process's journal file plus its checkpoint."""

    def __init__(self, directory: Path, index: int, lock_fd: int) -> None:
        self.directory = directory
        self.index = index
        self.path = directory / f"spend-{index}.jsonl"
        self.ckpt_path = directory / f"spend-{index}.ckpt"
        self._lock_fd = lock_fd
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        length = os.fstat(self.fd).st_size
        self._capacity = _round_up(length + GROW)
        os.ftruncate(self.fd, self._capacity)
        self._map = mmap.mmap(self.fd, self._capacity)
        self._resident = 0  # the pages before this offset were released (``_release``)
        end = self._map.find(b"\0")
        self.size = length if end < 0 else end  # the first journal format: no zeros after the records
        if self.size and self._map[self.size - 1] != 0x0A:  # torn by a crash mid-copy: end it
            self.write(b"\n")
        self.applied = min(read_checkpoint(self.ckpt_path), self.size)
        self._ckpt_fd = os.open(self.ckpt_path, os.O_RDWR | os.O_CREAT, 0o600)

    # -- hot path
    def append(self, record: SpendRecord) -> None:
        self.write(encode(record))

    def write(self, data: bytes) -> None:
        """Bytes after the last ones (a record's line: ``append``)."""
        start = self.size
        end = start + len(data)
        if end > self._capacity:
            self._capacity = _round_up(end + GROW)
            self._map.resize(self._capacity)  # the file grows with it
        self._map[start:end] = data
        self.size = end
        if end - self._resident >= RELEASE:
            self._release(end)

    def _release(self, end: int) -> None:
        """Drop the pages behind ``end`` from this process's memory (they stay in the page cache, and
        dirty ones are written back as before).  Only a journal that is not being truncated gets this
        far (a database outage), so its growth never becomes the gateway's RSS."""
        upto = end - end % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, self._resident, upto - self._resident)
        self._resident = upto

    # -- writer side
    def pending(self, limit_bytes: int = 1 << 20) -> tuple[list[SpendRecord], int]:
        """Records written but not applied yet (at most ~limit_bytes), and the offset after them."""
        if self.applied >= self.size:
            return [], self.applied
        chunk = self._map[self.applied:min(self.size, self.applied + limit_bytes)]
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], self.applied
        records = list(_parse(chunk[: end + 1]))
        return records, self.applied + end + 1

    def checkpoint(self, offset: int) -> None:
        """Overwritten in place: a fixed-width 21-byte write inside one disk sector."""
        self.applied = offset
        os.pwrite(self._ckpt_fd, b"%020d\n" % offset, 0)

    def rotate(self, min_bytes: int, max_tail: int = MAX_TAIL) -> int | None:
        """Start the journal afresh once it holds ``min_bytes`` or more and at most ``max_tail`` bytes
        of it are not applied yet (records appended while the last batch was written, on a busy
        gateway nearly always some); returns the bytes dropped from the front, None if not rotated.

        Everything applied: truncated in place.  A tail: copied to the start of a new file that
        then replaces the journal (``rename``).  The checkpoint is reset to 0 first, so a crash in
        between replays the whole old journal, which only costs time (a replay skips the request
        ids already stored); after the rename it replays the tail."""
        tail = self.size - self.applied
        if self.size < min_bytes or tail > max_tail:
            return None
        dropped = self.applied
        data = self._map[self.applied:self.size]
        self.checkpoint(0)  # first: a crash before the file is replaced or truncated only replays
        if not tail:
            os.ftruncate(self.fd, 0)  # drops the pages (nothing touches the map in between)
            os.ftruncate(self.fd, self._capacity)  # zeros again, still mapped
        elif not self._replace_with(data):
            return None  # the old journal stays, to be re-read from 0 (ids already stored are skipped)
        self.size, self._resident = tail, 0
        return dropped

    def _replace_with(self, data: bytes) -> bool:
        """A new file holding ``data`` takes the journal's place (and its map the old map's)."""
        new_path = self.path.with_name(self.path.name + ".new")
        capacity = _round_up(len(data) + GROW)
        fd = os.open(new_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        new_map: mmap.mmap | None = None
        try:
            os.ftruncate(fd, capacity)
            new_map = mmap.mmap(fd, capacity)
            new_map[:len(data)] = data
            os.rename(new_path, self.path)
        except OSError as exc:
            log.warning("spend journal: rotation failed (%s); the journal is kept", exc)
            if new_map is not None:
                new_map.close()
            os.close(fd)
            new_path.unlink(missing_ok=True)
            return False
        self._map.close()
        os.close(self.fd)
        self.fd, self._map, self._capacity = fd, new_map, capacity
        return True

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
        os.close(self._ckpt_fd)
        os.close(self._lock_fd)


def _round_up(n: int) -> int:
    return -(-n // mmap.PAGESIZE) * mmap.PAGESIZE


def _parse(chunk: bytes) -> Iterator[SpendRecord]:
    for line in chunk.split(b"\n"):
        if line.strip():
            try:
                yield decode(line)
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
                continue  # a torn line (crash mid-write): skipped, never fatal


def read_checkpoint(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _try_lock(directory: Path, index: int) -> int | None:
    fd = os.open(directory / f"spend-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def open_journal(directory: Path) -> Journal:
    """Claim the first journal no live process holds."""
    directory.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        fd = _try_lock(directory, index)
        if fd is not None:
            return Journal(directory, index, fd)
        index += 1


def orphans(directory: Path, own: int) -> Iterator[Journal]:
    """Journals left by dead processes (unlocked, with unapplied records): claimed one by one."""
    for path in sorted(directory.glob("spend-*.jsonl")):
        try:
            index = int(path.stem.split("-", 1)[1])
        except ValueError:
            continue
        if index == own:
            continue
        fd = _try_lock(directory, index)
        if fd is None:
            continue
        journal = Journal(directory, index, fd)
        if journal.applied >= journal.size:
            journal.close()
            continue
        yield journal
