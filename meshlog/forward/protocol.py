"""Fluent forward protocol v1, receiving side, without sockets: feed bytes, get events and replies.

A ``ForwardDecoder`` serves one connection. Each ``feed`` returns the events of the messages
completed so far and the bytes to send back (``{"ack": chunk}``, the handshake's ``PONG``),
which the caller sends only *after* it has handed the events on: an ack tells the sender
it may forget them. Shapes, time encodings and the handshake follow
``../shared/reference/input-streams.md`` §5 (fluentd's ``in_forward`` is the model).

Two kinds of trouble. A message that is well framed but cannot be used (unknown compression,
a broken gzip member, an entry that is not ``[time, record]``) is skipped with a reason in
``Batch.skipped`` and the connection goes on. A broken stream (garbage, a message over the
size limit, a failed handshake) raises ``ForwardError``: framing is lost, so the caller closes.
What one message may hold is bounded by ``max_message_bytes`` (bytes of the open message, and of
a compressed payload once inflated) and ``MAX_ITEMS``, never by what the sender declares.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import msgpack

from meshlog.errors import MeshlogError
from meshlog.forward.limits import MAX_MESSAGE_BYTES

MAX_ITEMS = 1 << 20  # entries per array/map: msgpack allocates a declared length up front
_PIECE = 1 << 20  # feed the unpacker this much at a time, draining in between
_SIGNAL_LOGS = 0

_zstd: ModuleType | None
try:  # zstd is optional (fluentd's `compress zstd`); gzip is what both collectors default to
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None


class ForwardError(MeshlogError):
    """The stream from one forward client cannot go on (garbage, too big, bad handshake).

    ``partial`` holds what the messages before the failure carried: hand it over (and ack it)
    before closing, so a client that goes wrong mid-stream loses nothing it sent correctly.
    """

    partial: Batch | None = None


class HandshakeError(ForwardError):
    """The client failed the shared-key handshake; ``reply`` (a ``PONG`` false) goes out before closing."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True, order=True)
class EventTime:
    """An event's time as the sender gave it: whole seconds and nanoseconds (ext type 0 carries both)."""

    seconds: int
    nanoseconds: int = 0

    @property
    def micros(self) -> int:
        return self.seconds * 1_000_000 + self.nanoseconds // 1000


@dataclass(frozen=True)
class Event:
    tag: str
    time: EventTime
    record: dict[Any, Any]


@dataclass
class Batch:
    """What one ``feed`` produced. Send ``replies`` after the events are safely handed over."""

    events: list[Event] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # messages/entries dropped, with the reason
    messages: int = 0  # complete forward messages seen (keepalives not counted)
    acks: int = 0
    ignored: int = 0  # events of a non-log signal (fluent-bit metrics/traces)

    def extend(self, other: Batch) -> None:
        self.events += other.events
        self.replies += other.replies
        self.skipped += other.skipped
        self.messages += other.messages
        self.acks += other.acks
        self.ignored += other.ignored


def _ext_hook(code: int, data: bytes) -> object:
    if code == 0 and len(data) == 8:
        return EventTime(int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
    return msgpack.ExtType(code, data)


def _unpacker(limit: int) -> msgpack.Unpacker:
    # str entries of PackedForward are binary (fluentd writes str32): surrogateescape keeps every byte.
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        strict_map_key=False,
        ext_hook=_ext_hook,
        max_buffer_size=limit,
        max_str_len=limit,
        max_bin_len=limit,
        max_ext_len=limit,
        max_array_len=min(limit, MAX_ITEMS),
        max_map_len=min(limit, MAX_ITEMS),
    )


def _pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True, unicode_errors="surrogateescape")
    return packed


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def _tag_of(msg: Any) -> str:
    """The tag of a ``[tag, …]`` message, as text; anything else is not a forward message."""
    if not isinstance(msg, list) or len(msg) < 2:
        raise ForwardError(f"not a forward message: expected [tag, …], got {_what(msg)}")
    tag = msg[0]
    if isinstance(tag, bytes):
        tag = tag.decode("utf-8", "replace")
    if not isinstance(tag, str):
        raise ForwardError(f"not a forward message: the tag is {_what(tag)}, not a string")
    return _clean(tag)


def _what(obj: object) -> str:
    """A short description of a value for error messages (never the whole value)."""
    if isinstance(obj, (list, tuple)):
        return f"an array of {len(obj)}"
    if isinstance(obj, dict):
        return f"a map of {len(obj)}"
    if obj is None:
        return "nil"
    return type(obj).__name__


def _sha512_hex(*parts: str | bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p)
    return h.hexdigest()


class ForwardDecoder:
    """The receiving side of one forward connection: incremental, bounded, pure (no I/O).

    With ``shared_key`` set, ``greeting()`` is the ``HELO`` to send on connect and the first
    message must be a valid ``PING``. ``now`` gives the time (ns) used for events sent with time 0.
    """

    def __init__(
        self,
        *,
        shared_key: str | None = None,
        hostname: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        now: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self._unpacker = _unpacker(max_message_bytes)
        self._fed = 0
        self._done = 0  # stream offset just after the last complete message
        self._now = now
        self._key = shared_key
        self._hostname = hostname or socket.gethostname()
        self._nonce = os.urandom(16)
        self._authenticated = shared_key is None
        self._first = True

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete message held (at most ``max_message_bytes``)."""
        return self._fed - self._done

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    def greeting(self) -> bytes:
        """What the server says first: the ``HELO`` when a shared key is set, else nothing."""
        if self._key is None:
            return b""
        return _pack(["HELO", {"nonce": self._nonce, "auth": "", "keepalive": True}])

    def feed(self, data: bytes) -> Batch:
        """Take the next bytes of the stream; return what the completed messages hold."""
        batch = Batch()
        try:
            self._feed(data, batch)
        except ForwardError as exc:
            exc.partial = batch
            raise
        return batch

    def _feed(self, data: bytes, batch: Batch) -> None:
        if self._first and data:
            self._first = False
            if data[:1] in (b"{", b"["):
                raise ForwardError("the client speaks JSON; only msgpack forward is supported")
        view = memoryview(data)
        for start in range(0, len(view), _PIECE):
            piece = view[start : start + _PIECE]
            try:
                self._unpacker.feed(piece)
            except msgpack.BufferFull:
                raise self._too_big() from None
            self._fed += len(piece)
            messages, self._done, error = _drain(self._unpacker, self._done)
            for message in messages:
                batch.extend(self._message(message))
            if error is not None:
                raise error
            if self.pending_bytes > self.max_message_bytes:  # e.g. a Forward array of many entries
                raise self._too_big()

    def _too_big(self) -> ForwardError:
        return ForwardError(f"message larger than the {_mib(self.max_message_bytes)} limit")

    def close(self) -> None:
        """The client went away: fine between messages, an error in the middle of one."""
        if self.pending_bytes:
            raise ForwardError(f"connection closed in the middle of a message ({self.pending_bytes} bytes unread)")

    # -- one message ------------------------------------------------------------------------

    def _message(self, msg: Any) -> Batch:
        if msg is None:  # keepalive / heartbeat
            return Batch()
        if not self._authenticated:
            return self._handshake(msg)
        tag = _tag_of(msg)
        entries = msg[1]
        batch = Batch(messages=1)
        if isinstance(entries, list):  # Forward: [tag, [[time, record], …], option?]
            option = self._forward(tag, msg, entries, batch)
        elif isinstance(entries, (str, bytes)):  # PackedForward / CompressedPackedForward
            option = self._packed(tag, msg, entries, batch)
        else:  # Message: [tag, time, record, option?]
            option = self._single(tag, msg, entries, batch)
        chunk = option.get("chunk") if option is not None else None  # no option: not accepted, no ack
        if chunk is not None:
            batch.replies.append(_pack({"ack": chunk}))
            batch.acks += 1
        return batch

    def _forward(self, tag: str, msg: list[Any], entries: list[Any], batch: Batch) -> dict[Any, Any] | None:
        option = self._option(msg, 2, batch)
        if option is not None:
            if _signal(option) == _SIGNAL_LOGS:
                batch.events += self._entries(tag, entries, batch)
            else:
                batch.ignored += len(entries)
        return option

    def _packed(self, tag: str, msg: list[Any], entries: str | bytes, batch: Batch) -> dict[Any, Any] | None:
        option = self._option(msg, 2, batch)
        if option is None:
            return None
        if _signal(option) != _SIGNAL_LOGS:
            batch.ignored += int(option.get("size") or 1)
            return option
        raw = entries.encode("utf-8", "surrogateescape") if isinstance(entries, str) else entries
        try:
            decoded = self._unpack_stream(self._decompress(raw, option.get("compressed")))
        except ForwardError as exc:
            batch.skipped.append(f"tag {tag}: {exc}")
            return None  # not accepted: no ack, the sender may retry
        batch.events += self._entries(tag, decoded, batch)
        return option

    def _single(self, tag: str, msg: list[Any], time: Any, batch: Batch) -> dict[Any, Any] | None:
        if len(msg) < 3:
            raise ForwardError(f"not a forward message: [tag, time] without a record ({len(msg)} items)")
        option = self._option(msg, 3, batch)
        if option is None:
            return None
        if _signal(option) != _SIGNAL_LOGS:
            batch.ignored += 1
        elif (event := self._event(tag, time, msg[2], batch)) is not None:
            batch.events.append(event)
        return option

    def _option(self, msg: list[Any], index: int, batch: Batch) -> dict[Any, Any] | None:
        if len(msg) > index + 1:
            raise ForwardError(f"not a forward message: an array of {len(msg)} items")
        option = msg[index] if len(msg) > index else None
        if option is None:
            return {}
        if not isinstance(option, dict):
            batch.skipped.append(f"tag {msg[0]}: the option is {_what(option)}, not a map")
            return None
        return option

    def _entries(self, tag: str, entries: list[Any], batch: Batch) -> list[Event]:
        events: list[Event] = []
        for entry in entries:
            if not isinstance(entry, list) or len(entry) != 2:
                batch.skipped.append(f"tag {tag}: an entry is {_what(entry)}, not [time, record]")
                continue
            event = self._event(tag, entry[0], entry[1], batch)
            if event is not None:
                events.append(event)
        return events

    def _event(self, tag: str, raw_time: Any, record: Any, batch: Batch) -> Event | None:
        if isinstance(raw_time, list) and len(raw_time) == 2 and isinstance(raw_time[1], dict):
            raw_time = raw_time[0]  # fluent-bit Retain_Metadata: [[time, metadata], record]
        when = self._time(raw_time)
        if when is None:
            batch.skipped.append(f"tag {tag}: the time is {_what(raw_time)}, not a number or EventTime")
            return None
        if not isinstance(record, dict):
            batch.skipped.append(f"tag {tag}: the record is {_what(record)}, not a map")
            return None
        return Event(tag, when, record)

    def _time(self, raw: Any) -> EventTime | None:
        if isinstance(raw, EventTime):
            t = raw
        elif isinstance(raw, bool):
            return None
        elif isinstance(raw, int):
            t = EventTime(raw, 0)
        elif isinstance(raw, float):
            if not math.isfinite(raw) or raw < 0:
                return None
            whole = math.floor(raw)  # non-standard float seconds: keep what a double can say
            ns = min(round((raw - whole) * 1e9), 999_999_999)
            t = EventTime(whole, ns)
        elif isinstance(raw, msgpack.Timestamp):
            t = EventTime(raw.seconds, raw.nanoseconds)
        else:
            return None
        if t.seconds == 0 and t.nanoseconds == 0:  # fluentd: time 0 means "now"
            ns = self._now()
            t = EventTime(ns // 1_000_000_000, ns % 1_000_000_000)
        return t

    def _decompress(self, raw: bytes, method: Any) -> bytes:
        if method in (None, "text"):
            return raw
        if method == "gzip":
            return _gunzip(raw, self.max_message_bytes)
        if method == "zstd":
            if _zstd is None:
                raise ForwardError("zstd-compressed message, but the zstandard package is not installed")
            out = bytearray()
            try:  # several frames back to back, like gzip members
                with _zstd.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as reader:
                    while block := reader.read(1 << 20):
                        out += block
                        if len(out) > self.max_message_bytes:
                            raise ForwardError(f"zstd payload inflates past the {_mib(self.max_message_bytes)} limit")
            except _zstd.ZstdError as exc:
                raise ForwardError(f"broken zstd payload: {exc}") from None
            return bytes(out)
        raise ForwardError(f"unknown compression {method!r} (expected gzip, zstd or text)")

    def _unpack_stream(self, raw: bytes) -> list[Any]:
        inner = _unpacker(max(self.max_message_bytes, len(raw)))
        inner.feed(raw)
        entries, done, error = _drain(inner, 0)
        if error is not None:
            raise ForwardError(f"the packed entries are not msgpack: {error}")
        if done != len(raw):
            raise ForwardError(f"the packed entries end mid-entry ({len(raw) - done} bytes left over)")
        return entries

    # -- handshake ----------------------------------------------------------------------------

    def _handshake(self, msg: Any) -> Batch:
        if not (isinstance(msg, list) and len(msg) == 6 and msg[0] == "PING"):
            raise HandshakeError(f"expected PING (shared key required), got {_what(msg)}")
        _, client_host, salt, digest, _user, _password = msg
        if not isinstance(client_host, str) or not isinstance(salt, (str, bytes)) or not isinstance(digest, str):
            raise HandshakeError("malformed PING", self._pong_failure("malformed PING"))
        assert self._key is not None
        if client_host == self._hostname:
            reason = "same hostname between input and output: invalid configuration"
            raise HandshakeError(reason, self._pong_failure(reason))
        expected = _sha512_hex(salt, client_host, self._nonce, self._key)
        if not hmac.compare_digest(expected, digest.lower()):
            raise HandshakeError(
                f"shared key mismatch (client {client_host})", self._pong_failure("shared_key mismatch")
            )
        self._authenticated = True
        pong = ["PONG", True, "", self._hostname, _sha512_hex(salt, self._hostname, self._nonce, self._key)]
        return Batch(replies=[_pack(pong)])

    @staticmethod
    def _pong_failure(reason: str) -> bytes:
        return _pack(["PONG", False, reason, "", ""])


def _drain(unpacker: msgpack.Unpacker, done: int) -> tuple[list[Any], int, ForwardError | None]:
    """The complete objects the unpacker holds, the stream offset after the last one, and what
    stopped it if the bytes that follow are not msgpack (the objects before still count)."""
    out: list[Any] = []
    try:
        for obj in unpacker:
            out.append(obj)
            done = unpacker.tell()
    except msgpack.exceptions.FormatError:
        return out, done, ForwardError(f"invalid msgpack at byte {done}: not a msgpack value")
    except msgpack.exceptions.StackError:
        return out, done, ForwardError(f"invalid msgpack at byte {done}: values nested too deeply")
    except ValueError as exc:  # a declared length over a limit
        return out, done, ForwardError(f"invalid msgpack at byte {done}: {exc}")
    return out, done, None


def _signal(option: dict[Any, Any]) -> Any:
    return option.get("fluent_signal", _SIGNAL_LOGS) or _SIGNAL_LOGS


def _clean(text: str) -> str:
    """A str decoded with surrogateescape, with any undecodable byte turned into U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _gunzip(data: bytes, limit: int) -> bytes:
    """Every gzip member in turn (fluentd appends one per write), refusing to inflate past ``limit``."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit - len(out) + 1)
        except zlib.error as exc:
            raise ForwardError(f"broken gzip payload: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise ForwardError(f"gzip payload inflates past the {_mib(limit)} limit")
        if not inflater.eof:
            raise ForwardError("truncated gzip payload")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # padding after the last member
            break
    return bytes(out)
