"""The plain-HTTP provider client on the event loop (transport/plain.py), through ``Upstream``.

Each scenario runs against a raw HTTP/1.1 server on loopback whose every byte the test decides (keep-alive,
chunked and close-delimited bodies, interim answers, connections closed at the worst moment, answers that
never come), once under asyncio's own loop and once under uvloop (the gateway's).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import openai
import pytest
import uvloop

from lockgate.errors import ResponseTooLarge, UpstreamTimeout, UpstreamUnreachable
from lockgate.transport.client import PlainStream, ReqwestStream, Upstream
from lockgate.transport.plain import PlainClient, direct_hosts
from tests.conftest import MASTER_KEY, gateway_config, start_gateway

Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RUNNERS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body (by content-length), or None at the connection's end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head, body


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions?api-version=1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(self, reader, writer)
        finally:
            self.open -= 1
            writer.close()

    async def next_request(self, reader: asyncio.StreamReader) -> bool:
        got = await read_request(reader)
        if got is None:
            return False
        self.requests.append(got)
        return True


async def answer_ok(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await server.next_request(reader):
        writer.write(OK)
        await writer.drain()


def scenario(run: Callable[[Awaitable[None]], None], handler: Handler,
             body: Callable[[RawServer, Upstream], Awaitable[None]], **upstream: object) -> RawServer:
    holder: list[RawServer] = []

    async def main() -> None:
        async with RawServer(handler) as server:
            up = Upstream(**upstream)  # type: ignore[arg-type]
            try:
                await body(server, up)
            finally:
                await up.close()
            holder.append(server)

    run(main())
    return holder[0]


@RUNNERS
def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(run) -> None:
    async def body(server: RawServer, up: Upstream) -> None:
        for _ in range(3):
            reply = await up.post(server.url, {"content-type": "application/json", "authorization": "Bearer k"},
                                  b'{"model":"m"}', 5.0)
            assert (reply.status, reply.body) == (200, b'{"ok":true}')
            assert reply.headers["content-type"] == "application/json"
        reply = await up.get(server.url, {"accept": "application/json"}, 5.0)
        assert reply.status == 200

    server = scenario(run, answer_ok, body)
    assert server.connections == 1
    head, sent = server.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions?api-version=1 HTTP/1.1"
    assert lines[1].startswith("host: 127.0.0.1:")
    assert "authorization: Bearer k" in lines and "content-length: 13" in lines
    assert sent == b'{"model":"m"}'
    assert server.requests[3][0].startswith(b"GET /v1/chat/completions?api-version=1 HTTP/1.1\r\n")
    assert b"content-length" not in server.requests[3][0]


@RUNNERS
def test_chunked_answer_after_an_interim_answer(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.next_request(reader):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-a: 1\r\nX-A: 2\r\n"
                         b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    async def body(server: RawServer, up: Upstream) -> None:
        for _ in range(2):
            reply = await up.post(server.url, {}, b"{}", 5.0)
            assert (reply.status, reply.body, reply.headers["x-a"]) == (201, b"hello world", "1, 2")

    assert scenario(run, handler, body).connections == 1


@RUNNERS
def test_an_answer_ended_by_the_connection_is_whole_and_the_connection_not_reused(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await server.next_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"x" * 100_000)
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        for _ in range(2):
            reply = await up.post(server.url, {}, b"{}", 5.0)
            assert reply.body == b"x" * 100_000

    assert scenario(run, handler, body).connections == 2


@RUNNERS
def test_a_truncated_answer_fails_as_a_lost_connection(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await server.next_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789")
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        with pytest.raises(UpstreamUnreachable):
            await up.post(server.url, {}, b"{}", 5.0)

    scenario(run, handler, body)


@RUNNERS
def test_a_request_on_a_connection_the_provider_dropped_is_sent_again_once(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.connections == 1:  # answers once, then drops the connection on the next request
            await server.next_request(reader)
            writer.write(OK)
            await writer.drain()
            await server.next_request(reader)
            return
        await answer_ok(server, reader, writer)

    async def body(server: RawServer, up: Upstream) -> None:
        assert (await up.post(server.url, {}, b"1", 5.0)).status == 200
        assert (await up.post(server.url, {}, b"2", 5.0)).status == 200

    server = scenario(run, handler, body)
    assert server.connections == 2
    assert [sent for _, sent in server.requests] == [b"1", b"2", b"2"]


@RUNNERS
def test_bytes_nobody_asked_for_retire_the_connection(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.connections == 1:
            await server.next_request(reader)
            writer.write(OK + OK)  # one answer too many, in the same segment
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")  # and later, unasked
            await writer.drain()
            await asyncio.sleep(1)
            return
        await answer_ok(server, reader, writer)

    async def body(server: RawServer, up: Upstream) -> None:
        reply = await up.post(server.url, {}, b"1", 5.0)
        assert (reply.status, reply.body) == (200, b'{"ok":true}')
        await asyncio.sleep(0.1)
        reply = await up.post(server.url, {}, b"2", 5.0)
        assert (reply.status, reply.body) == (200, b'{"ok":true}')

    server = scenario(run, handler, body)
    assert server.connections == 2 and [sent for _, sent in server.requests] == [b"1", b"2"]


@RUNNERS
def test_a_new_connection_dropped_before_the_answer_is_not_retried(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.next_request(reader)

    async def body(server: RawServer, up: Upstream) -> None:
        with pytest.raises(UpstreamUnreachable):
            await up.post(server.url, {}, b"{}", 5.0)

    assert scenario(run, handler, body).connections == 1


@RUNNERS
def test_unreachable_and_garbage(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.next_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def body(server: RawServer, up: Upstream) -> None:
        with pytest.raises(UpstreamUnreachable):
            await up.post(server.url, {}, b"{}", 5.0)
        with pytest.raises(UpstreamUnreachable, match="could not be reached"):
            await up.post("http://127.0.0.1:9/v1/chat/completions", {}, b"{}", 5.0)

    scenario(run, handler, body)


@RUNNERS
def test_no_answer_times_out_and_the_connection_is_not_reused(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.connections == 1:
            await server.next_request(reader)
            await asyncio.sleep(5)
            writer.write(OK)  # too late: must not be taken for the next request's answer
            return
        await answer_ok(server, reader, writer)

    async def body(server: RawServer, up: Upstream) -> None:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await up.post(server.url, {}, b"{}", 0.3)
        assert 0.25 < time.monotonic() - started < 2
        assert (await up.post(server.url, {}, b"{}", 5.0)).status == 200

    assert scenario(run, handler, body).connections == 2


@RUNNERS
def test_an_answer_over_the_limit_is_refused(run) -> None:
    async def body(server: RawServer, up: Upstream) -> None:
        with pytest.raises(ResponseTooLarge, match="max_response_size_mb"):
            await up.post(server.url, {}, b"{}", 5.0, limit=10)
        assert (await up.post(server.url, {}, b"{}", 5.0, limit=11)).body == b'{"ok":true}'

    assert scenario(run, answer_ok, body).connections == 2


@RUNNERS
def test_max_connections_queues_requests(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.next_request(reader):
            await asyncio.sleep(0.02)
            writer.write(OK)
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        replies = await asyncio.gather(*(up.post(server.url, {}, b"{}", 5.0) for _ in range(6)))
        assert [r.status for r in replies] == [200] * 6

    server = scenario(run, handler, body, max_connections=2)
    assert server.most_open == 2 and len(server.requests) == 6


@RUNNERS
def test_waiting_for_a_free_connection_counts_against_the_timeout(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.next_request(reader):
            await asyncio.sleep(0.5)
            writer.write(OK)
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        first = asyncio.ensure_future(up.post(server.url, {}, b"{}", 5.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await up.post(server.url, {}, b"{}", 0.2)  # the one connection stays busy for 0.5 s
        assert time.monotonic() - started < 0.45
        assert (await first).status == 200

    assert scenario(run, handler, body, max_connections=1).connections == 1


@RUNNERS
def test_a_header_with_a_line_break_is_never_sent(run) -> None:
    async def body(server: RawServer, up: Upstream) -> None:
        for bad in ({"x-a": "1\r\nx-injected: 1"}, {"x-a": "1\nx-b: 2"}, {"x-a": "1\r"}, {"x-a": "é€"}):
            with pytest.raises(UpstreamUnreachable):
                await up.post(server.url, bad, b"{}", 5.0)

    assert scenario(run, answer_ok, body).connections == 0


@RUNNERS
def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.next_request(reader):
            await asyncio.sleep(0.2 if len(server.requests) == 1 else 0)
            writer.write(OK)
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        task = asyncio.ensure_future(up.post(server.url, {}, b"{}", 5.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await up.post(server.url, {}, b"{}", 5.0)).status == 200

    assert scenario(run, handler, body).connections == 2


@RUNNERS
def test_a_stream_arrives_chunk_by_chunk_and_a_finished_one_keeps_its_connection(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.next_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(3):
                event = f"data: {i}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(0.05)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        for _ in range(2):
            async with up.stream(server.url, {}, b"{}", 5.0) as stream:
                assert isinstance(stream, PlainStream)
                assert (stream.status, stream.headers["content-type"]) == (200, "text/event-stream")
                chunks = []
                while (chunk := await stream.read()) is not None:
                    chunks.append(chunk)
            assert chunks == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]

    assert scenario(run, handler, body).connections == 1


@RUNNERS
def test_a_stream_left_early_closes_its_connection(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.next_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        for _ in range(2):
            async with up.stream(server.url, {}, b"{}", 5.0) as stream:
                assert await stream.read() == b"first\n"

    assert scenario(run, handler, body).connections == 2


@RUNNERS
def test_a_silent_stream_times_out_per_read(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        await writer.drain()
        await asyncio.sleep(3)

    async def body(server: RawServer, up: Upstream) -> None:
        async with up.stream(server.url, {}, b"{}", 0.3) as stream:
            assert await stream.read() == b"first\n"
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await stream.read()
            assert 0.25 < time.monotonic() - started < 2

    scenario(run, handler, body)


@RUNNERS
def test_a_stream_dropped_midway_fails_at_once(run) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.next_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        await writer.drain()

    async def body(server: RawServer, up: Upstream) -> None:
        async with up.stream(server.url, {}, b"{}", 30.0) as stream:
            assert await stream.read() == b"first\n"
            started = time.monotonic()
            with pytest.raises(UpstreamUnreachable):
                await stream.read()
            assert time.monotonic() - started < 2

    scenario(run, handler, body)


@RUNNERS
def test_a_connection_idle_past_its_time_is_not_reused(run) -> None:
    async def body(server: RawServer, up: Upstream) -> None:
        await up.post(server.url, {}, b"{}", 5.0)
        assert up.plain is not None
        pool = next(iter(up.plain.pools.values()))
        pool.idle[0].idle_since -= 61
        await up.post(server.url, {}, b"{}", 5.0)
        assert pool.open == 1

    assert scenario(run, answer_ok, body).connections == 2


@RUNNERS
def test_https_proxied_and_switched_off_urls_go_through_pyreqwest(run, monkeypatch) -> None:
    async def body(server: RawServer, up: Upstream) -> None:
        async with up.stream(server.url, {}, b"{}", 5.0) as stream:
            assert isinstance(stream, ReqwestStream)
            assert await stream.read_all() == b'{"ok":true}'
        assert (await up.post(server.url, {}, b"{}", 5.0)).status == 200

    scenario(run, answer_ok, body, plain=False)

    async def targets() -> None:
        client = PlainClient(1.0, None, direct_hosts())
        assert client.target("https://api.openai.com/v1/chat/completions") is None
        assert client.target("http://127.0.0.1:8000/v1") is not None
        monkeypatch.setenv("http_proxy", "http://proxy.internal:3128")
        monkeypatch.setenv("no_proxy", "localhost,vllm.internal")
        proxied = PlainClient(1.0, None, direct_hosts())
        assert proxied.target("http://ollama.example:11434/api/chat") is None
        assert proxied.target("http://vllm.internal:8000/v1/chat/completions") is not None

    run(targets())


def _threads(pid: int) -> list[str]:
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            names.append(f.read().strip())
    return names


@pytest.mark.parametrize("on_loop", [True, False], ids=["on-loop", "pyreqwest"])
def test_the_gateway_reaches_a_plain_http_provider_either_way(mocks, tmp_path, on_loop) -> None:
    """End to end with the official SDK, unary and streamed; the setting decides which client carries
    the request (pyreqwest's runtime thread only exists once pyreqwest was used)."""
    config = gateway_config(mocks)
    config["lockgate_settings"] = {"upstream_plain_http_on_loop": on_loop}
    gw = start_gateway(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
        for _ in range(3):
            reply = client.chat.completions.create(model="openai-model",
                                                   messages=[{"role": "user", "content": "hello"}])
            assert reply.choices[0].message.content
            chunks = list(client.chat.completions.create(model="openai-model", stream=True,
                                                         messages=[{"role": "user", "content": "hello"}]))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="unreachable-model", messages=[{"role": "user", "content": "x"}])
        assert failed.value.status_code == 502
        assert any(name.startswith("pyreqwest") for name in _threads(gw.process.pid)) is not on_loop
    finally:
        gw.process.terminate()
        gw.process.wait(10)
