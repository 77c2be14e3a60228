"""state/resp.py, the counters' pipelined Redis connection, against the real Redis (fails, not skips, when
it is unreachable): many callers on one connection, NOSCRIPT, a killed connection, AUTH and SELECT, error
replies, a cancelled caller."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from lockgate.state.resp import RespConnection, Script, encode

REDIS_URL = "redis://127.0.0.1:6379/0"
ECHO = Script("return {ARGV[1], KEYS[1], tonumber(ARGV[2]) * 2}")


@pytest.fixture
def admin():
    r = redis.Redis.from_url(REDIS_URL)
    r.ping()
    yield r
    r.close()


@pytest.fixture
async def conn():
    c = RespConnection(REDIS_URL)
    yield c
    c.close()


def test_commands_are_encoded_as_redis_py_does():
    assert encode(["SET", b"k\r\n", 12, 0.1]) == b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$3\r\n0.1\r\n"
    assert encode(["ECHO", "é"]) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


async def test_many_callers_share_one_connection_and_each_gets_its_own_reply(conn):
    first = await conn.execute("CLIENT", "ID")
    replies = await asyncio.gather(*(conn.evalsha(ECHO, [f"k{i}"], [f"v{i}", i]) for i in range(300)))
    assert replies == [[f"v{i}".encode(), f"k{i}".encode(), 2 * i] for i in range(300)]
    assert await conn.execute("CLIENT", "ID") == first  # no second connection was opened


async def test_a_flushed_script_cache_loads_the_script_again(conn, admin):
    assert await conn.evalsha(ECHO, ["a"], ["b", 1]) == [b"b", b"a", 2]
    admin.script_flush()
    assert await conn.evalsha(ECHO, ["a"], ["c", 2]) == [b"c", b"a", 4]


async def test_a_killed_connection_fails_the_commands_in_flight_and_the_next_one_reconnects(conn, admin):
    key = f"lockgate-test-{uuid.uuid4().hex}"
    first = await conn.execute("CLIENT", "ID")
    waiting = asyncio.ensure_future(conn.execute("BLPOP", key, 5))  # in flight until the kill
    await asyncio.sleep(0.1)
    admin.client_kill_filter(_id=str(first))
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 5)
    assert await conn.execute("PING") == b"PONG"
    assert await conn.execute("CLIENT", "ID") != first


async def test_user_password_and_database_from_the_url(admin):
    user, password = f"lockgate-test-{uuid.uuid4().hex[:8]}", "p@ss:w/rd"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    conn = RespConnection(f"redis://{user}:p%40ss%3Aw%2Frd@127.0.0.1:6379/5")
    try:
        info = (await conn.execute("CLIENT", "INFO")).decode()
        assert f"user={user}" in info and " db=5 " in info
        wrong = RespConnection(f"redis://{user}:nope@127.0.0.1:6379/0")
        with pytest.raises(ResponseError, match="WRONGPASS"):
            await wrong.execute("PING")
        wrong.close()
    finally:
        conn.close()
        admin.acl_deluser(user)


async def test_an_error_reply_raises_and_the_connection_goes_on(conn, admin):
    key = f"lockgate-test-{uuid.uuid4().hex}"
    admin.set(key, "text", ex=30)
    failing = Script("return redis.call('INCRBY', KEYS[1], 1)")
    with pytest.raises(ResponseError, match="not an integer"):
        await conn.evalsha(failing, [key], [])
    assert await conn.execute("GET", key) == b"text"


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others(conn):
    key = f"lockgate-test-{uuid.uuid4().hex}"
    waiting = asyncio.ensure_future(conn.execute("BLPOP", key, 0.3))
    await asyncio.sleep(0.05)
    waiting.cancel()
    assert await conn.execute("ECHO", "after") == b"after"  # not BLPOP's nil
    assert await conn.execute("PING") == b"PONG"


async def test_an_unreachable_redis_is_a_connection_error():
    conn = RespConnection("redis://127.0.0.1:1/0")
    with pytest.raises(RedisConnectionError):
        await conn.execute("PING")


def test_under_uvloop_as_the_gateway_runs_it(admin):
    """The gateway's loop is uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def main() -> None:
        conn = RespConnection(REDIS_URL)
        try:
            replies = await asyncio.gather(*(conn.evalsha(ECHO, [f"k{i}"], [f"v{i}", i]) for i in range(50)))
            assert replies == [[f"v{i}".encode(), f"k{i}".encode(), 2 * i] for i in range(50)]
            first = await conn.execute("CLIENT", "ID")
            admin.client_kill_filter(_id=str(first))
            await asyncio.sleep(0.1)
            assert await conn.execute("PING") == b"PONG"
            assert await conn.execute("CLIENT", "ID") != first
        finally:
            conn.close()

    uvloop.run(main())


def test_turn_writes_joins_the_writes_of_one_turn():
    from lockgate.transport.turn_writes import TurnWrites

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.writes.append(data)

    async def main() -> list[bytes]:
        out, rec = TurnWrites(), Recorder()
        out.transport = rec  # type: ignore[assignment]
        for i in range(5):
            out.write(b"%d;" % i)
        assert rec.writes == []  # nothing before the turn ends
        await asyncio.sleep(0)
        out.write(b"next")
        await asyncio.sleep(0)
        out.transport = None
        out.write(b"dropped")
        await asyncio.sleep(0)
        return rec.writes

    assert asyncio.run(main()) == [b"0;1;2;3;4;", b"next"]


def test_one_connection_object_serves_a_new_event_loop():
    """A RespConnection used from a second event loop opens a connection there (the first one's transport
    belongs to a loop that is gone)."""
    conn = RespConnection(REDIS_URL)

    async def client_id() -> int:
        return await asyncio.wait_for(conn.execute("CLIENT", "ID"), 5)  # a stale connection would never answer

    try:
        first = asyncio.run(client_id())
        second = asyncio.run(client_id())
        assert first != second
        assert asyncio.run(asyncio.wait_for(conn.execute("PING"), 5)) == b"PONG"
    finally:
        conn.close()
