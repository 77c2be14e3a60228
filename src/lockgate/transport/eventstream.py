"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded incrementally.

Bedrock streams (ConverseStream, InvokeModelWithResponseStream) are binary
messages, each::

    total length u32 | headers length u32 | prelude CRC32 u32   (the prelude, 12 bytes)
    headers: (name length u8, name, value type u8, value)*
    payload
    message CRC32 u32   (over everything before it)

All integers are big-endian.  ``EventStreamParser.feed(chunk)`` takes bytes as
they arrive and returns ``(event type, payload)`` for every complete message;
partial messages stay buffered.  Both CRCs are checked.  A message whose
``:message-type`` is ``exception`` or ``error`` raises ``UpstreamError`` with
the status AWS gives that exception.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

from ..errors import UpstreamError, type_for_status

_PRELUDE = struct.Struct(">III")
_PRELUDE_LEN = 12
_MAX_MESSAGE = 24 * 1024 * 1024  # AWS: 16 MiB payload + 128 KiB headers; anything bigger is garbage

# AWS exception name -> HTTP status (Bedrock Runtime's service model, plus the common auth errors)
ERROR_STATUS = {
    "ValidationException": 400,
    "ConflictException": 400,
    "ServiceQuotaExceededException": 400,
    "SerializationException": 400,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "ExpiredTokenException": 403,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "TooManyRequestsException": 429,
    "InternalServerException": 500,
    "InternalFailure": 500,
    "ServiceUnavailableException": 503,
}


def error_name(error_type: str) -> str:
    """``throttlingException`` / ``ThrottlingException:http://...`` -> ``ThrottlingException``."""
    name = error_type.split(":", 1)[0].strip().rsplit("#", 1)[-1]
    return name[:1].upper() + name[1:]


def error_status(error_type: str, default: int = 500) -> int:
    return ERROR_STATUS.get(error_name(error_type), default)


class EventStreamParser:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        return [_event(headers, payload) for headers, payload in self.messages(chunk)]

    def flush(self) -> list[tuple[str, bytes]]:
        if self._buf:
            self._buf.clear()
            raise UpstreamError("the provider's event stream ended in the middle of a message", status=502)
        return []

    def messages(self, chunk: bytes) -> list[tuple[dict[str, Any], bytes]]:
        """Complete messages as ``(headers, payload)``, CRCs verified."""
        buf = self._buf
        buf += chunk
        out = []
        start = 0
        while len(buf) - start >= _PRELUDE_LEN:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, start)
            if zlib.crc32(buf[start:start + 8]) != prelude_crc:
                raise _corrupt("prelude checksum mismatch")
            if total > _MAX_MESSAGE or headers_len > total - 16:
                raise _corrupt("invalid message length")
            if len(buf) - start < total:
                break
            end = start + total
            (message_crc,) = struct.unpack_from(">I", buf, end - 4)
            if zlib.crc32(buf[start:end - 4]) != message_crc:
                raise _corrupt("message checksum mismatch")
            headers_end = start + _PRELUDE_LEN + headers_len
            out.append((parse_headers(bytes(buf[start + _PRELUDE_LEN:headers_end])), bytes(buf[headers_end:end - 4])))
            start = end
        del buf[:start]
        return out


def _corrupt(what: str) -> UpstreamError:
    return UpstreamError(f"the provider's event stream is corrupt ({what})", status=502)


def _event(headers: dict[str, Any], payload: bytes) -> tuple[str, bytes]:
    kind = headers.get(":message-type", "event")
    if kind == "event":
        return str(headers.get(":event-type", "")), payload
    if kind == "exception":
        raise _exception(str(headers.get(":exception-type", "")), payload)
    code = str(headers.get(":error-code", "InternalFailure"))
    raise _error(code, str(headers.get(":error-message") or code))


def _exception(error_type: str, payload: bytes) -> UpstreamError:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = {}
    message = (body.get("message") or body.get("Message")) if isinstance(body, dict) else None
    return _error(error_type, str(message or error_name(error_type)))


def _error(error_type: str, message: str) -> UpstreamError:
    status = error_status(error_type)
    return UpstreamError(f"{message} ({error_name(error_type)})", status=status, type=type_for_status(status))


# value type -> fixed size (None: 2-byte length prefix)
_FIXED = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_INTS = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def parse_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            name_len = data[pos]
            name = data[pos + 1:pos + 1 + name_len].decode()
            pos += 1 + name_len
            vtype = data[pos]
            pos += 1
            if vtype in (0, 1):
                headers[name] = vtype == 0
                continue
            size = _FIXED.get(vtype)
            if size is None:
                (size,) = struct.unpack_from(">H", data, pos)
                pos += 2
            raw = data[pos:pos + size]
            pos += size
            if vtype in _INTS:
                headers[name] = struct.unpack(_INTS[vtype], raw)[0]
            else:
                headers[name] = raw.decode() if vtype == 7 else raw
    except (IndexError, struct.error, UnicodeDecodeError):
        raise _corrupt("bad headers") from None
    return headers
