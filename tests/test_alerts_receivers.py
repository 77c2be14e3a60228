"""Local receivers for the alert tests (no tests here): an HTTP server that records Slack / webhook posts (and can
500 or hang), and an SMTP server (aiosmtpd) that records the mail it is given."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiohttp import web


class Receiver:
    """POST /<anything>: the JSON body is recorded under the path.  Paths starting /fail answer 500,
    /slow answer after 3 s; everything else 200 ``ok`` (as Slack does)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any, float]] = []  # (path, JSON body, arrival time)
        self.lock = threading.Lock()

    def create_app(self, recorder: Any) -> web.Application:  # MockHost.start passes its Recorder
        app = web.Application()

        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            with self.lock:
                self.posts.append((request.path, json.loads(raw), time.monotonic()))
            if request.path.startswith("/fail"):
                return web.Response(status=500, text="receiver error")
            if request.path.startswith("/slow"):
                await asyncio.sleep(3)
            return web.Response(text="ok")

        app.router.add_post("/{tail:.*}", handle)
        return app

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, body, _ in self.posts if p == path]

    def count(self, path: str) -> int:
        return len(self.bodies(path))


class MailCatcher:
    """An aiosmtpd server on loopback; ``messages`` holds each mail received (parsed)."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        catcher = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                catcher.messages.append(message)  # type: ignore[arg-type]
                catcher.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                return "250 Message accepted for delivery"

        self.port = port
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(step)
