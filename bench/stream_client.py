"""Minimal keep-alive HTTP/1.1 client on a raw blocking socket, for timing.

Used by bench.py for the sequential (1 connection) streaming measurement:
time-to-first-token (first bytes carrying a ``"content"`` field after the
response headers) and whole-stream time (last byte of the response body),
both measured from just before the request is written to the socket.

A plain blocking socket is used on purpose: with a single sequential
connection an event loop only adds client-side jitter to what is measured.
Standard library only, so it runs under any Python 3.8+.
"""

from __future__ import annotations

import socket
import statistics
import time

_perf = time.perf_counter


class HTTPError(Exception):
    pass


class Conn:
    def __init__(self, host: str, port: int, timeout: float = 30.0, quickack: bool = False):
        self.host, self.port, self.timeout = host, port, timeout
        # quickack: TCP_QUICKACK before every recv (Linux clears it again), so this client ACKs at once
        # instead of delaying ACKs; shows what a server that leaves Nagle on (no TCP_NODELAY) loses to
        # the client's delayed ACKs, ~40 ms per stream on Linux
        self.quickack = quickack
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- reading -----------------------------------------------------------
    def _recv(self) -> bytes:
        if self.quickack:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by peer")
        now = _perf()
        if self._in_body and self._t_first is None:
            window = self._tail + data
            if self._marker in window:
                self._t_first = now
            self._tail = window[-len(self._marker):]
        self.buf += data
        return data

    def _read_line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._recv()

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    # -- request -----------------------------------------------------------
    def request(self, raw: bytes, marker: bytes = b'"content"'):
        """Send one raw HTTP/1.1 request; return (status, headers, body, t_first, t_end).

        t_first / t_end are seconds since just before the request was sent;
        t_first is None if the marker never appeared in the body.
        """
        if self.sock is None:
            self._connect()
        self._marker, self._tail, self._t_first, self._in_body = marker, b"", None, False
        t0 = _perf()
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        self._in_body = True
        self.buf = b""
        if rest:  # body bytes that arrived together with the headers
            self._tail = b""
            window = rest
            if marker in window:
                self._t_first = _perf()
            self._tail = window[-len(marker):]
            self.buf = rest
        body = bytearray()
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            while True:
                size = int(self._read_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_line():  # trailers, then empty line
                        pass
                    break
                body += self._read_exact(size)
                self._read_exact(2)
        elif "content-length" in headers:
            body += self._read_exact(int(headers["content-length"]))
        else:  # close-delimited
            try:
                while True:
                    self._recv()
            except EOFError:
                pass
            body += self.buf
            self.buf = b""
            self.close()
        t_end = _perf()
        self._in_body = False
        if headers.get("connection", "").lower() == "close":
            self.close()
        t_first = None if self._t_first is None else self._t_first - t0
        return status, headers, bytes(body), t_first, t_end - t0


def build_request(host: str, port: int, path: str, body: bytes, headers: dict) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    for k, v in headers.items():
        lines.append(f"{k}: {v}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get_status(host: str, port: int, path: str, timeout: float = 1.0) -> int | None:
    """One GET on a fresh connection; the status code, or None if unreachable."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                data += chunk
            return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


def _pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def measure_stream(host: str, port: int, path: str, body: bytes, headers: dict,
                   n: int = 300, warmup: int = 30, expect_chunks: int = 20, body_for=None,
                   quickack: bool = False) -> dict:
    """Sequential streamed requests on one keep-alive connection.

    body_for: if given, request i sends body_for(i) instead of body (built before the clock starts).
    quickack: the client ACKs every segment at once (TCP_QUICKACK), see Conn.
    """
    raw = build_request(host, port, path, body, headers)
    conn = Conn(host, port, quickack=quickack)
    ttft, total, errors, first_error = [], [], 0, None
    cache: dict = {}  # x-lockgate-cache values seen, when the gateway sends the header
    try:
        for i in range(warmup + n):
            if body_for is not None:
                raw = build_request(host, port, path, body_for(i), headers)
            try:
                status, hdrs, rbody, t_first, t_end = conn.request(raw)
            except (OSError, EOFError, ValueError) as e:
                conn.close()
                errors += 1
                first_error = first_error or f"{type(e).__name__}: {e}"
                continue
            ok = (status == 200 and b"[DONE]" in rbody and t_first is not None
                  and rbody.count(b'"content"') >= expect_chunks)
            if not ok:
                errors += 1
                first_error = first_error or f"status {status}, body {rbody[:200]!r}"
                continue
            if "x-lockgate-cache" in hdrs:
                cache[hdrs["x-lockgate-cache"]] = cache.get(hdrs["x-lockgate-cache"], 0) + 1
            if i >= warmup:
                ttft.append(t_first * 1000.0)
                total.append(t_end * 1000.0)
    finally:
        conn.close()
    ttft.sort()
    total.sort()
    return {
        "requests": len(ttft),
        "errors": errors,
        "first_error": first_error,
        "ttft_p50_ms": statistics.median(ttft) if ttft else None,
        "ttft_p90_ms": _pct(ttft, 90),
        "ttft_p99_ms": _pct(ttft, 99),
        "total_p50_ms": statistics.median(total) if total else None,
        "total_p90_ms": _pct(total, 90),
        "total_p99_ms": _pct(total, 99),
        **({"cache": cache} if cache else {}),
    }


def one_request(host: str, port: int, path: str, body: bytes, headers: dict):
    conn = Conn(host, port)
    try:
        return conn.request(build_request(host, port, path, body, headers))
    finally:
        conn.close()
