"""The decoder, without sockets: every captured sample, then each shape, option and failure by hand."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
import zlib
from datetime import UTC, datetime
from typing import Any

import msgpack
import polars as pl
import pytest
import zstandard

from meshlog.formats.presets import resolve
from meshlog.forward import protocol
from meshlog.forward.protocol import Batch, EventTime, ForwardDecoder, ForwardError, HandshakeError
from meshlog.forward.records import LineAssembler
from meshlog.parse import parse_lines
from tests.forward.support import FORWARD_SAMPLES

# file → (messages, events, acks), from samples/streams/README.md and the bytes themselves
SAMPLES = {
    "fluent-logger-python-message-int.bin": (1, 1, 0),
    "fluent-logger-python-message-eventtime.bin": (1, 1, 0),
    "node-fluent-org-logger-message-ack.bin": (2, 2, 2),
    "node-fluent-org-logger-forward-ack.bin": (2, 2, 2),
    "node-fluent-org-logger-packedforward-bin-ack.bin": (2, 2, 2),
    "node-fluent-org-logger-compressedpackedforward-ack.bin": (2, 2, 2),
    "fluentd-out_forward-packedforward-str32-ack.bin": (1, 4, 1),
    "fluentd-out_forward-compressed-gzip-multimember.bin": (1, 4, 0),
    "fluentbit-out_forward-forward-mode.bin": (1, 4, 0),
    "fluentbit-out_forward-forward-mode-options-ack.bin": (1, 4, 1),
    "fluentbit-out_forward-compressed-gzip-bin.bin": (1, 4, 0),
    "fluentbit-out_forward-retain-metadata.bin": (1, 4, 0),
    "fluentbit-out_forward-time-as-integer.bin": (1, 4, 0),
    "message-mode-eventtime.bin": (4, 4, 0),
}
PYTHON_TAG = "kube.var.log.containers.sleep-7656cf8794-7hkmv_default_istio-proxy-abc.log"
FLUENTBIT_TAG = (
    "kube.var.log.containers.sleep-7656cf8794-7hkmv_default_istio-proxy-"
    "896d982ddb44b7b3dc3678c004ccc1e93814fba6735688a56a075e5cbcbe5fdc.log"
)
FLUENTD_TAG = "kubernetes." + FLUENTBIT_TAG.removeprefix("kube.")


def decode(data: bytes, **options: Any) -> Batch:
    decoder = ForwardDecoder(**options)
    batch = decoder.feed(data)
    decoder.close()
    return batch


def sample(name: str) -> bytes:
    return (FORWARD_SAMPLES / name).read_bytes()


def chunk_tokens(raw: bytes) -> list[str]:
    """The ack tokens written in a capture: the str after each ``chunk`` key (fixstr or str8)."""
    tokens = []
    for m in re.finditer(rb"\xa5chunk(?:([\xa0-\xbf])|\xd9(.))", raw, re.DOTALL):
        n = m.group(1)[0] & 0x1F if m.group(1) else m.group(2)[0]
        tokens.append(raw[m.end() : m.end() + n].decode())
    return tokens


def rfc3339(text: str) -> EventTime:
    """A collector's ``time`` string (1–9 fraction digits, Z) as seconds + nanoseconds."""
    whole, _, frac = text.removesuffix("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return EventTime(seconds, int(frac.ljust(9, "0")) if frac else 0)


# -- the captured samples -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_decodes_with_its_acks(name: str) -> None:
    raw = sample(name)
    batch = decode(raw)
    messages, events, acks = SAMPLES[name]
    assert (batch.messages, len(batch.events), batch.acks) == (messages, events, acks)
    assert batch.skipped == [] and batch.ignored == 0
    tokens = chunk_tokens(raw)
    assert len(tokens) == acks
    assert batch.replies == [msgpack.packb({"ack": t}) for t in tokens]  # echoed exactly, in order
    assert all(isinstance(e.record, dict) and e.record for e in batch.events)


def test_sample_directory_is_covered() -> None:
    assert {p.name for p in FORWARD_SAMPLES.glob("*.bin")} == set(SAMPLES)
    assert sum(e for _, e, _ in SAMPLES.values()) == 42  # what the reference receiver decoded


def test_fluentd_chunk_keeps_its_trailing_newline() -> None:
    batch = decode(sample("fluentd-out_forward-packedforward-str32-ack.bin"))
    assert msgpack.unpackb(batch.replies[0]) == {"ack": "X4ocLpt9T2qMDhs9X3qcLg==\n"}


def test_python_client_times() -> None:
    raw = sample("fluent-logger-python-message-int.bin")
    tag = PYTHON_TAG.encode()
    at = raw.index(tag) + len(tag)
    assert raw[at] == 0xCE  # uint32 seconds
    (seconds,) = struct.unpack(">I", raw[at + 1 : at + 5])
    (event,) = decode(raw).events
    assert (event.tag, event.time) == (PYTHON_TAG, EventTime(seconds, 0))

    raw = sample("fluent-logger-python-message-eventtime.bin")
    (ext,) = re.findall(rb"\xd7\x00(.{8})", raw, re.DOTALL)  # fixext8, type 0
    (event,) = decode(raw).events
    assert event.time == EventTime(*struct.unpack(">II", ext))
    assert event.time.nanoseconds != 0


@pytest.mark.parametrize(
    "name",
    [
        "fluentbit-out_forward-forward-mode.bin",
        "fluentbit-out_forward-compressed-gzip-bin.bin",
        "fluentbit-out_forward-retain-metadata.bin",
        "fluentbit-out_forward-forward-mode-options-ack.bin",
    ],
)
def test_fluentbit_event_times_match_the_records_own_time(name: str) -> None:
    batch = decode(sample(name))
    assert [e.tag for e in batch.events] == [FLUENTBIT_TAG] * 4
    assert [e.time for e in batch.events] == [rfc3339(e.record["time"]) for e in batch.events]


def test_fluentbit_time_as_integer_keeps_whole_seconds() -> None:
    batch = decode(sample("fluentbit-out_forward-time-as-integer.bin"))
    assert [e.time for e in batch.events] == [EventTime(rfc3339(e.record["time"]).seconds) for e in batch.events]


def test_every_variant_of_one_sender_gives_the_same_events() -> None:
    base = decode(sample("fluentbit-out_forward-forward-mode.bin")).events
    for name in [
        "fluentbit-out_forward-compressed-gzip-bin.bin",
        "fluentbit-out_forward-retain-metadata.bin",
        "fluentbit-out_forward-forward-mode-options-ack.bin",
    ]:
        assert decode(sample(name)).events == base, name
    fluentd = decode(sample("fluentd-out_forward-packedforward-str32-ack.bin")).events
    assert decode(sample("fluentd-out_forward-compressed-gzip-multimember.bin")).events == fluentd
    assert [e.record["log"].rstrip("\n") for e in fluentd] == [e.record["log"] for e in base]
    assert [e.time for e in fluentd] == [e.time for e in base]
    message_mode = decode(sample("message-mode-eventtime.bin")).events
    assert [e.tag for e in fluentd] == [e.tag for e in message_mode] == [FLUENTD_TAG] * 4
    assert [e.time for e in message_mode] == [e.time for e in fluentd]


def test_fluentd_shapes_are_what_the_test_claims() -> None:
    """str32 entries holding bytes that are not UTF-8, and gzip members back to back."""
    raw = sample("fluentd-out_forward-packedforward-str32-ack.bin")
    at = raw.index(FLUENTD_TAG.encode()) + len(FLUENTD_TAG)
    assert raw[at] == 0xDB
    (size,) = struct.unpack(">I", raw[at + 1 : at + 5])
    with pytest.raises(UnicodeDecodeError):
        raw[at + 5 : at + 5 + size].decode("utf-8")
    gz = sample("fluentd-out_forward-compressed-gzip-multimember.bin")
    first = zlib.decompressobj(16 + zlib.MAX_WBITS)
    first.decompress(gz[gz.index(b"\x1f\x8b") :])
    assert first.eof and first.unused_data.startswith(b"\x1f\x8b")  # a second member follows


def test_node_client_captures() -> None:
    for name in [n for n in SAMPLES if n.startswith("node-")]:
        first, second = decode(sample(name)).events
        assert first.tag == second.tag == "kube.var.log.containers.x.log"
        assert second.record == {"log": "second\n", "stream": "stderr"}
        assert second.time == EventTime(1719556870, 123456789)
        assert first.record["log"].startswith('[2024-06-28T06:41:10.123Z] "GET /status/418 HTTP/1.1" 418 ')


def test_sample_access_lines_parse_with_the_istio_preset() -> None:
    assembler = LineAssembler()
    lines = pl.concat([assembler.lines(decode(sample(n)).events) for n in sorted(SAMPLES)])
    log = parse_lines(lines, resolve("istio"))
    assert (log.counts.total, log.counts.access, log.counts.unparsed) == (42, 6, 0)
    requests = log.requests
    assert requests["response_code"].to_list() == [418] * 6  # "outbound 418" in the samples README
    assert requests["path"].unique().to_list() == ["/status/418"]
    assert requests["cluster_direction"].unique().to_list() == ["outbound"]
    # 8 collector captures × (3 pilot-agent lines + 1 Envoy warning); the node client's "second" ×4
    assert dict(log.other["kind"].value_counts().rows()) == {"istio-log": 24, "envoy-log": 8, "unrecognised": 4}


# -- shapes, times and options by hand -----------------------------------------------------------


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def event_time(seconds: int, nanos: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def packed(*entries: Any) -> bytes:
    return b"".join(pack(e) for e in entries)


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    raw = b"".join(sample(n) for n in sorted(SAMPLES))
    decoder = ForwardDecoder()
    batch = Batch()
    for i in range(len(raw)):
        batch.extend(decoder.feed(raw[i : i + 1]))
    decoder.close()
    assert len(batch.events) == 42 and batch.acks == 10


def test_times_float_zero_msgpack_timestamp_and_bad() -> None:
    data = (
        pack(["t", 1719556871.25, {"log": "float"}])
        + pack(["t", 0, {"log": "zero means now"}])
        + pack(["t", msgpack.Timestamp(1719556871, 5), {"log": "ext -1"}])
        + pack(["t", None, {"log": "bad"}])
    )
    batch = decode(data, now=lambda: 1_700_000_000_123_456_789)
    assert [e.time for e in batch.events] == [
        EventTime(1719556871, 250_000_000),
        EventTime(1_700_000_000, 123_456_789),
        EventTime(1719556871, 5),
    ]
    assert batch.skipped == ["tag t: the time is nil, not a number or EventTime"]


def test_nil_keepalives_are_ignored() -> None:
    data = pack(None) + pack(["t", 1, {"log": "a"}]) + pack(None)
    batch = decode(data)
    assert (batch.messages, [e.record for e in batch.events]) == (1, [{"log": "a"}])


def test_retain_metadata_in_forward_and_packed_modes() -> None:
    entry = [[event_time(1719556871, 7), {"trace": "x"}], {"log": "a"}]
    for message in (["t", [entry]], ["t", packed(entry)]):
        (event,) = decode(pack(message)).events
        assert event.time == EventTime(1719556871, 7) and event.record == {"log": "a"}


def test_str_entries_with_bytes_that_are_not_utf8() -> None:
    entries = packed([event_time(1, 2), {"log": b"caf\xe9 \xff"}])
    # written the fluentd way: str32 (0xdb) holding the binary stream
    message = b"\x93\xa1t\xdb" + struct.pack(">I", len(entries)) + entries + pack({"chunk": "c"})
    batch = decode(message)
    assert batch.events[0].record == {"log": b"caf\xe9 \xff"}
    assert batch.replies == [pack({"ack": "c"})]
    assembler = LineAssembler()
    assert assembler.lines(batch.events)["line"].to_list() == ["caf\ufffd \ufffd"]
    assert assembler.invalid_utf8 == 1


def test_message_mode_str_record_values_with_invalid_utf8() -> None:
    message = b"\x93\xa1t\x01\x81\xa3log\xa4ab\xff\n"  # ["t", 1, {"log": "ab\xff\n"}] as a raw str
    batch = decode(message)
    assembler = LineAssembler()
    assert assembler.lines(batch.events)["line"].to_list() == ["ab\ufffd"]
    assert assembler.invalid_utf8 == 1


def test_binary_ack_tokens_are_echoed_as_binary() -> None:
    batch = decode(pack(["t", [[1, {"log": "a"}]], {"chunk": b"\x00\xff raw"}]))
    assert batch.replies == [b"\x81\xa3ack\xc4\x06\x00\xff raw"]


def test_gzip_several_members_and_padding() -> None:
    members = gzip.compress(packed([1, {"log": "a"}])) + gzip.compress(packed([2, {"log": "b"}])) + b"\0\0"
    batch = decode(pack(["t", members, {"compressed": "gzip", "chunk": "k"}]))
    assert [e.record["log"] for e in batch.events] == ["a", "b"] and batch.acks == 1


def test_zstd_several_frames() -> None:
    zstd = zstandard.ZstdCompressor()
    payload = zstd.compress(packed([1, {"log": "a"}], [2, {"log": "b"}])) + zstd.compress(packed([3, {"log": "c"}]))
    batch = decode(pack(["t", payload, {"compressed": "zstd", "chunk": "z"}]))
    assert [e.record["log"] for e in batch.events] == ["a", "b", "c"] and batch.acks == 1


def test_zstd_bomb_and_garbage() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (4 << 20))
    batch = decode(pack(["t", bomb, {"compressed": "zstd"}]), max_message_bytes=1 << 20)
    assert batch.skipped == ["tag t: zstd payload inflates past the 1 MiB limit"]
    batch = decode(pack(["t", b"not zstd", {"compressed": "zstd"}]))
    assert batch.skipped == ["tag t: broken zstd payload: zstd decompress error: Unknown frame descriptor"]


def test_zstd_without_the_package_is_a_clear_error_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "_zstd", None)
    data = pack(["t", b"\x28\xb5\x2f\xfd...", {"compressed": "zstd", "chunk": "z"}]) + pack(["t", 1, {"log": "ok"}])
    batch = decode(data)
    assert batch.skipped == ["tag t: zstd-compressed message, but the zstandard package is not installed"]
    assert batch.replies == [] and [e.record["log"] for e in batch.events] == ["ok"]  # no ack; the stream goes on


@pytest.mark.parametrize(
    ("payload", "option", "reason"),
    [
        (
            b"not gzip at all",
            {"compressed": "gzip"},
            "broken gzip payload: Error -3 while decompressing data: incorrect header check",
        ),
        (gzip.compress(bytes(range(256)) * 8, mtime=0)[:-30], {"compressed": "gzip"}, "truncated gzip payload"),
        (b"x", {"compressed": "lz4"}, "unknown compression 'lz4' (expected gzip, zstd or text)"),
        (b"\x92\x01\x81\xa3log", {}, "the packed entries end mid-entry (7 bytes left over)"),
        (b"\x92\x01\x80\xc1", {}, "the packed entries are not msgpack: invalid msgpack at byte 3: not a msgpack value"),
    ],
)
def test_broken_payloads_skip_the_message_without_ack(payload: bytes, option: dict[str, Any], reason: str) -> None:
    batch = decode(pack(["t", payload, {**option, "chunk": "k"}]))
    assert batch.skipped == [f"tag t: {reason}"]
    assert (batch.events, batch.replies, batch.messages) == ([], [], 1)


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (4 << 20))
    assert len(bomb) < 10_000
    batch = decode(pack(["t", bomb, {"compressed": "gzip"}]), max_message_bytes=1 << 20)
    assert batch.skipped == ["tag t: gzip payload inflates past the 1 MiB limit"]


def test_bad_entries_are_skipped_and_the_rest_acked() -> None:
    batch = decode(pack(["t", [[1, {"log": "a"}], "junk", [1, "not a map"], [2, {"log": "b"}]], {"chunk": "k"}]))
    assert [e.record["log"] for e in batch.events] == ["a", "b"]
    assert batch.skipped == ["tag t: an entry is str, not [time, record]", "tag t: the record is str, not a map"]
    assert batch.acks == 1  # like fluentd: invalid events are dropped, the chunk is accepted


def test_non_log_signals_are_ignored_but_acked() -> None:
    data = pack(["t", [[1, {"metric": 1}], [2, {"metric": 2}]], {"fluent_signal": 2, "chunk": "m"}])
    data += pack(["t", b"\x01\x02cmetrics", {"fluent_signal": 1, "size": 5}])
    data += pack(["t", [[1, {"log": "a"}]], {"fluent_signal": 0}])
    batch = decode(data)
    assert (batch.ignored, len(batch.events), batch.replies) == (7, 1, [pack({"ack": "m"})])


# -- the stream cannot go on: ForwardError --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a forward message: expected [tag, …], got int"),
        (pack(None) + b"\xc1\xc1\xc1", "invalid msgpack at byte 1: not a msgpack value"),
        (b"\x91" * 2000, "invalid msgpack at byte 0: values nested too deeply"),
        (b'{"tag": "t"}', "the client speaks JSON; only msgpack forward is supported"),
        (pack([1, 2, {}]), "not a forward message: the tag is int, not a string"),
        (pack(["t", 1]), "not a forward message: [tag, time] without a record (2 items)"),
        (pack(["t", 1, {}, {}, {}]), "not a forward message: an array of 5 items"),
        (b"\xdd\x7f\xff\xff\xff", "invalid msgpack at byte 0: 2147483647 exceeds max_array_len(1048576)"),
    ],
)
def test_garbage_is_a_forward_error(data: bytes, message: str) -> None:
    with pytest.raises(ForwardError) as err:
        ForwardDecoder().feed(data)
    assert str(err.value) == message


def test_a_half_message_then_close() -> None:
    decoder = ForwardDecoder()
    whole = pack(["t", 1, {"log": "a" * 100}])
    assert decoder.feed(whole[:50]).events == []
    with pytest.raises(ForwardError, match=r"^connection closed in the middle of a message \(50 bytes unread\)$"):
        decoder.close()


def test_oversized_message_is_rejected_at_the_limit_without_buffering_it() -> None:
    decoder = ForwardDecoder(max_message_bytes=1 << 20)
    header = b"\x93\xa1t\xdb" + struct.pack(">I", 100 << 20)  # a 100 MB str32 PackedForward
    decoder.feed(header)
    block = b"\0" * (256 << 10)
    fed = 0
    with pytest.raises(ForwardError) as err:
        for _ in range(400):
            decoder.feed(block)
            fed += 1
    assert str(err.value) == "message larger than the 1 MiB limit"
    assert fed == 3  # refused as the limit was crossed, not after 100 MB
    assert decoder.pending_bytes <= (1 << 20) + len(header)


# -- shared-key handshake -------------------------------------------------------------------------


def ping(helo: bytes, key: str, host: str = "client.local", salt: bytes = b"0123456789abcdef") -> tuple[bytes, bytes]:
    _, options = msgpack.unpackb(helo)
    nonce = options["nonce"]
    digest = hashlib.sha512(salt + host.encode() + nonce + key.encode()).hexdigest()
    return pack(["PING", host, salt, digest, "", ""]), nonce


def test_handshake_accepts_the_right_key() -> None:
    decoder = ForwardDecoder(shared_key="s3cret", hostname="meshlog.local")
    helo = decoder.greeting()
    name, options = msgpack.unpackb(helo)
    assert name == "HELO" and len(options["nonce"]) == 16 and options["auth"] == "" and options["keepalive"] is True
    message, nonce = ping(helo, "s3cret")
    batch = decoder.feed(message)
    pong = msgpack.unpackb(batch.replies[0])
    salt = b"0123456789abcdef"
    assert pong == [
        "PONG",
        True,
        "",
        "meshlog.local",
        hashlib.sha512(salt + b"meshlog.local" + nonce + b"s3cret").hexdigest(),
    ]
    assert decoder.authenticated
    assert len(decoder.feed(pack(["t", 1, {"log": "a"}])).events) == 1


def test_handshake_rejects_a_wrong_key_with_a_pong() -> None:
    decoder = ForwardDecoder(shared_key="s3cret", hostname="meshlog.local")
    message, _ = ping(decoder.greeting(), "guess")
    with pytest.raises(HandshakeError) as err:
        decoder.feed(message)
    assert str(err.value) == "shared key mismatch (client client.local)"
    assert msgpack.unpackb(err.value.reply) == ["PONG", False, "shared_key mismatch", "", ""]


def test_handshake_requires_ping_first() -> None:
    decoder = ForwardDecoder(shared_key="s3cret")
    decoder.greeting()
    with pytest.raises(HandshakeError, match=r"^expected PING \(shared key required\), got an array of 3$"):
        decoder.feed(pack(["t", 1, {"log": "sneaky"}]))


def test_handshake_refuses_the_servers_own_hostname() -> None:
    decoder = ForwardDecoder(shared_key="k", hostname="same")
    message, _ = ping(decoder.greeting(), "k", host="same")
    with pytest.raises(HandshakeError, match="same hostname between input and output"):
        decoder.feed(message)


def test_forward_array_growing_past_the_limit_is_rejected() -> None:
    """Entries are parsed as they arrive, so the limit counts bytes of the open message, not the buffer."""
    decoder = ForwardDecoder(max_message_bytes=1 << 20)
    entry = pack([1, {"log": "x" * 2000}])
    decoder.feed(b"\x92\xa1t\xdd" + struct.pack(">I", 100_000))
    with pytest.raises(ForwardError, match=r"^message larger than the 1 MiB limit$"):
        for _ in range(1000):
            decoder.feed(entry * 10)
    assert decoder.pending_bytes <= (1 << 20) + 10 * len(entry) + 10


def test_messages_before_garbage_are_kept_with_the_error() -> None:
    decoder = ForwardDecoder()
    good = pack(["t", 1, {"log": "good"}, {"chunk": "c"}])
    with pytest.raises(ForwardError) as err:
        decoder.feed(good + b"\xc1")
    assert str(err.value) == f"invalid msgpack at byte {len(good)}: not a msgpack value"
    partial = err.value.partial
    assert partial is not None
    assert [e.record for e in partial.events] == [{"log": "good"}] and partial.replies == [pack({"ack": "c"})]
