"""The HTTP protocol the gateway serves with (transport/server_protocol.py): a whole answer in one write,
streams and HEAD answers not held back.  Driven through uvicorn's own protocol code with a recording
transport, and against a real gateway process over a keep-alive connection."""

from __future__ import annotations

import asyncio
import http.client
from urllib.parse import urlparse

import uvicorn
from uvicorn.server import ServerState

from lockgate.transport.server_protocol import LeanHttpToolsProtocol

from tests.conftest import MASTER_KEY


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)


def protocol_for(app) -> tuple[LeanHttpToolsProtocol, RecordingTransport]:  # noqa: ANN001
    config = uvicorn.Config(app=app, http=LeanHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    proto = LeanHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport


async def whole_answer(scope, receive, send) -> None:  # noqa: ANN001
    body = b'{"ok":true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def test_a_whole_answer_is_one_write_and_keep_alive_goes_on() -> None:
    proto, transport = protocol_for(whole_answer)
    for _ in range(2):
        transport.writes.clear()
        proto.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(transport.writes) == 1, transport.writes
        head, _, body = transport.writes[0].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
        assert body == b'{"ok":true}'
    assert not transport.closed


async def test_a_head_answer_is_written_when_the_answer_completes() -> None:
    proto, transport = protocol_for(whole_answer)
    proto.data_received(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK") and transport.writes[0].endswith(b"\r\n\r\n")
    assert not transport.closed


async def test_a_stream_s_headers_leave_before_its_first_event() -> None:
    release = asyncio.Event()

    async def stream(scope, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    proto, transport = protocol_for(stream)
    proto.data_received(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(transport.writes) == 1 and b"transfer-encoding: chunked" in transport.writes[0]
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"0\r\n\r\n"]


def test_the_gateway_answers_head_and_post_on_one_keep_alive_connection(gateway) -> None:  # noqa: ANN001
    url = urlparse(gateway.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("HEAD", "/no-such-route")
        head = conn.getresponse()
        head.read()
        assert head.status == 404 and int(head.getheader("content-length")) > 0  # the route table's 404, headers only
        conn.request("POST", "/v1/chat/completions", body=b'{"model": "openai-model"}',
                     headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 400 and b"messages" in body
        conn.request("GET", "/health/liveliness")
        again = conn.getresponse()
        assert again.status == 200 and again.read()
    finally:
        conn.close()


def test_a_websocket_upgrade_is_answered_as_plain_http(gateway) -> None:  # noqa: ANN001
    """No WebSocket route (uvicorn runs with ws="none"): the handshake gets an HTTP answer, never a 101, the
    connection goes on, and nothing in the log tells the operator to install a WebSocket library."""
    url = urlparse(gateway.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/v1/realtime?model=openai-model", headers={
            "connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "authorization": f"Bearer {MASTER_KEY}"})
        answer = conn.getresponse()
        assert answer.status == 404 and b"error" in answer.read()
    finally:
        conn.close()
    assert "WebSocket" not in gateway.log() and "Unsupported upgrade" not in gateway.log()


async def echo(scope, receive, send) -> None:  # noqa: ANN001
    """Reads the whole body (several receive() calls when it arrives in parts), answers it back."""
    parts = []
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        parts.append(message["body"])
        if not message["more_body"]:
            break
    body = b"".join(parts)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_body_in_parts_is_waited_for_and_given_whole() -> None:
    proto, transport = protocol_for(echo)
    proto.data_received(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcd")
    await settle()
    assert transport.writes == []  # the app waits in receive() for the rest
    proto.data_received(b"efghij")
    await settle()
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\nabcdefghij")


async def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    proto, transport = protocol_for(echo)
    proto.data_received(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    await settle()
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    proto.data_received(b"ok")
    await settle()
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK") and transport.writes[1].endswith(b"\r\n\r\nok")


async def test_pipelined_requests_are_answered_in_order() -> None:
    proto, transport = protocol_for(echo)
    proto.data_received(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n1"
                        b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n2")
    await settle()
    assert [w[-1:] for w in transport.writes] == [b"1", b"2"]


async def test_a_client_that_goes_away_is_an_http_disconnect() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def watch(scope, receive, send) -> None:  # noqa: ANN001
        await receive()  # the (empty) body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        started.set()
        seen.append((await receive())["type"])  # waits until the client goes

    proto, transport = protocol_for(watch)
    proto.data_received(b"GET /w HTTP/1.1\r\nHost: a\r\n\r\n")
    await started.wait()
    await settle()
    assert seen == []
    proto.connection_lost(None)
    await settle()
    assert seen == ["http.disconnect"]


async def test_a_header_with_a_line_break_is_refused_and_the_connection_closed() -> None:
    async def bad(scope, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2"), (b"x-a", b"ok"), (b"x-b", b"evil\r\nset-cookie: x")]})

    proto, transport = protocol_for(bad)
    proto.data_received(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert transport.writes == [] and transport.closed


async def test_connection_close_and_an_app_error_before_answering() -> None:
    async def close(scope, receive, send) -> None:  # noqa: ANN001
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2"), (b"Connection", b"close")]})
        await send({"type": "http.response.body", "body": b"ok"})

    proto, transport = protocol_for(close)
    proto.data_received(b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert len(transport.writes) == 1 and b"connection: close" in transport.writes[0] and transport.closed

    async def broken(scope, receive, send) -> None:  # noqa: ANN001
        raise ValueError("boom")

    proto, transport = protocol_for(broken)
    proto.data_received(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    await settle()
    assert transport.writes[0].startswith(b"HTTP/1.1 500 ") and transport.writes[0].endswith(b"Internal Server Error")
    assert transport.closed
