"""The receiver on 127.0.0.1 with real clients (PyPI fluent-logger, npm @fluent-org/logger), the
handshake, and clients that misbehave while others go on."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import msgpack
import polars as pl
import pytest
from fluent import sender

from meshlog.forward.server import ForwardServer, ListenError
from tests.forward.support import (
    K8S_TAG,
    SAMPLES,
    connect,
    node_send,
    recv_closed,
    start_receiver,
    wait_for,
)

PLAIN = (SAMPLES / "kubectl-plain.log").read_text().splitlines()
ACCESS_418 = next(line for line in PLAIN if '"GET /status/418 HTTP/1.1" 418' in line)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- real clients -------------------------------------------------------------------------------


@pytest.mark.parametrize("nanosecond_precision", [False, True], ids=["int-time", "eventtime"])
def test_python_fluent_logger(nanosecond_precision: bool) -> None:
    server, got, problems = start_receiver()
    try:
        client = sender.FluentSender(
            K8S_TAG, host="127.0.0.1", port=server.port, nanosecond_precision=nanosecond_precision
        )
        for i, line in enumerate(PLAIN):
            # fluent-logger sends a float as EventTime with nanosecond_precision, an int as an int
            when = 1719556871.5 + i if nanosecond_precision else 1719556871 + i
            assert client.emit_with_time(None, when, {"log": line + "\n", "stream": "stdout"}), client.last_error
        client.close()
        lines = got.wait_lines(len(PLAIN))
    finally:
        server.stop()
    assert lines["line"].to_list() == PLAIN
    assert lines["line_no"].to_list() == list(range(1, len(PLAIN) + 1))
    assert lines["source"].unique().to_list() == [f"forward:{K8S_TAG}"]
    assert lines.select("pod", "namespace", "container", "stream").unique().rows() == [
        ("sleep-7656cf8794-7hkmv", "default", "istio-proxy", "stdout")
    ]
    fraction = 0.5 if nanosecond_precision else 0  # int time drops the fraction
    assert lines["captured_at"].to_list() == [utc(1719556871 + fraction + i) for i in range(len(PLAIN))]
    assert problems == [] and server.stats.events == len(PLAIN) and server.stats.acks == 0


NODE_EVENTS = [
    {"record": {"log": ACCESS_418 + "\n", "stream": "stdout"}, "time": [1719556871, 52231830]},
    {"record": {"log": "second\n", "stream": "stderr"}, "time": [1719556872, 0]},
]


@pytest.mark.parametrize("mode", ["Message", "Forward", "PackedForward", "CompressedPackedForward"])
def test_node_client_every_mode_with_acks(mode: str) -> None:
    server, got, problems = start_receiver()
    try:
        node_send({"port": server.port, "mode": mode, "ack": True, "tag": K8S_TAG, "events": NODE_EVENTS})
        lines = got.wait_lines(2)
        # the client resolves each emit only when its ack came back, so a clean exit means every ack arrived
        assert server.stats.acks == server.stats.messages >= 1
    finally:
        server.stop()
    assert lines["line"].to_list() == [ACCESS_418, "second"]
    assert lines["stream"].to_list() == ["stdout", "stderr"]
    assert lines["captured_at"].to_list() == [
        datetime(2024, 6, 28, 6, 41, 11, 52231, tzinfo=UTC),
        datetime(2024, 6, 28, 6, 41, 12, tzinfo=UTC),
    ]
    assert problems == []


def test_node_client_without_ack() -> None:
    server, got, problems = start_receiver()
    try:
        node_send({"port": server.port, "mode": "PackedForward", "ack": False, "tag": "app", "events": NODE_EVENTS})
        assert got.wait_lines(2)["line"].to_list() == [ACCESS_418, "second"]
    finally:
        server.stop()
    assert server.stats.acks == 0 and problems == []


def test_node_client_shared_key_handshake() -> None:
    server, got, problems = start_receiver(shared_key="s3cret", hostname="meshlog.test")
    try:
        config = {
            "port": server.port,
            "mode": "Forward",
            "ack": True,
            "tag": "app",
            "events": NODE_EVENTS,
            "clientHostname": "node.test",
        }
        node_send({**config, "sharedKey": "s3cret"})
        assert got.wait_lines(2)["line"].to_list() == [ACCESS_418, "second"]
        refused = node_send({**config, "sharedKey": "wrong"}, check=False)
        wait_for(lambda: server.stats.problems == 1)
    finally:
        server.stop()
    assert refused.returncode == 1 and "Authentication failed: shared_key mismatch" in refused.stderr
    assert [p.split(": ", 1)[1] for p in problems] == ["handshake failed: shared key mismatch (client node.test)"]
    assert got.lines.height == 2


# -- handshake with a hand-written client -------------------------------------------------------


def handshake(sock: socket.socket, key: str, host: str = "py.test", salt: bytes = b"salt-salt-salt-1") -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        unpacker.feed(sock.recv(4096))
        helo = next(unpacker, None)
        if helo is not None:
            break
    assert helo[0] == "HELO"
    nonce = helo[1]["nonce"]
    digest = hashlib.sha512(salt + host.encode() + nonce + key.encode()).hexdigest()
    sock.sendall(pack(["PING", host, salt, digest, "", ""]))
    while True:
        pong = next(unpacker, None)
        if pong is not None:
            break
        data = sock.recv(4096)
        if not data:
            return []
        unpacker.feed(data)
    if pong[1]:  # the server proves it knows the key too
        assert pong[4] == hashlib.sha512(salt + pong[3].encode() + nonce + key.encode()).hexdigest()
    return pong


def test_shared_key_handshake_by_hand() -> None:
    server, got, problems = start_receiver(shared_key="k3y", hostname="meshlog.test")
    try:
        with connect(server.port) as good:
            assert handshake(good, "k3y")[:4] == ["PONG", True, "", "meshlog.test"]
            good.sendall(pack(["app", event_time_ext(1719556871, 5), {"log": "after handshake"}, {"chunk": "c1"}]))
            assert msgpack.unpackb(good.recv(4096)) == {"ack": "c1"}
        with connect(server.port) as bad:
            assert handshake(bad, "nope") == ["PONG", False, "shared_key mismatch", "", ""]
            assert recv_closed(bad) == b""
        with connect(server.port) as rude:
            rude.recv(4096)  # HELO
            rude.sendall(pack(["app", 1, {"log": "no ping"}]))
            assert recv_closed(rude) == b""
        wait_for(lambda: server.stats.problems == 2)
    finally:
        server.stop()
    assert got.lines["line"].to_list() == ["after handshake"]
    assert [p.split(": ", 1)[1] for p in problems] == [
        "handshake failed: shared key mismatch (client py.test)",
        "handshake failed: expected PING (shared key required), got an array of 3",
    ]


def event_time_ext(seconds: int, nanos: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, seconds.to_bytes(4, "big") + nanos.to_bytes(4, "big"))


# -- acks wait for the hand-over; stop; failures -------------------------------------------------


def test_ack_is_sent_only_after_the_callback_returned() -> None:
    release = threading.Event()
    handed: list[pl.DataFrame] = []

    def slow(frame: pl.DataFrame) -> None:
        release.wait(10)
        handed.append(frame)

    server = ForwardServer(slow, host="127.0.0.1", port=0).start()
    try:
        with connect(server.port) as sock:
            sock.sendall(pack(["app", 1, {"log": "x"}, {"chunk": "wait-for-me"}]))
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(4096)
            release.set()
            sock.settimeout(5)
            assert msgpack.unpackb(sock.recv(4096)) == {"ack": "wait-for-me"}
            assert len(handed) == 1
    finally:
        release.set()
        server.stop()


def test_stop_closes_clients_and_hands_over_open_partials() -> None:
    server, got, _ = start_receiver()
    sock = connect(server.port)
    sock.sendall(pack(["app", 1, {"log": "never finished", "_p": "P"}]))
    wait_for(lambda: server.stats.events == 1)
    assert got.lines.height == 0
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert recv_closed(sock) == b""
    sock.close()
    assert got.lines["line"].to_list() == ["never finished"]
    server.stop()  # twice is fine


def test_a_failing_callback_stops_the_server_and_is_raised() -> None:
    def broken(frame: pl.DataFrame) -> None:
        raise BrokenPipeError("stdout went away")

    server = ForwardServer(broken, host="127.0.0.1", port=0).start()
    with connect(server.port) as sock:
        sock.sendall(pack(["app", 1, {"log": "x"}, {"chunk": "never acked"}]))
        assert recv_closed(sock) == b""  # no ack for events that were not handed over
    with pytest.raises(BrokenPipeError, match="stdout went away"):
        server.stop()


def test_address_in_use_is_a_listen_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=rf"^cannot listen on 127.0.0.1:{port}: "):
            ForwardServer(lambda f: None, host="127.0.0.1", port=port).start()


# -- bad clients cost their own connection only ---------------------------------------------------


def test_bad_clients_get_one_message_each_and_others_go_on() -> None:
    server, got, problems = start_receiver(idle_timeout=1.5, max_message_bytes=8 << 20)
    expected: dict[int, str] = {}
    try:
        good = connect(server.port)
        good.sendall(pack(["app", 1, {"log": "before"}, {"chunk": "g1"}]))
        assert msgpack.unpackb(good.recv(4096)) == {"ack": "g1"}

        silent = connect(server.port)  # connects and sends nothing: closed after the idle timeout
        expected[silent.getsockname()[1]] = "sent nothing for 1.5 s; closed"

        with connect(server.port) as garbage:
            expected[garbage.getsockname()[1]] = "not a forward message: expected [tag, …], got int"
            garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert recv_closed(garbage) == b""

        with connect(server.port) as good_then_garbage:  # what came before the garbage is kept and acked
            kept = pack(["app", 1, {"log": "kept"}, {"chunk": "k"}])
            expected[good_then_garbage.getsockname()[1]] = f"invalid msgpack at byte {len(kept)}: not a msgpack value"
            good_then_garbage.sendall(kept + b"\xc1")
            assert msgpack.unpackb(recv_closed(good_then_garbage)) == {"ack": "k"}

        with connect(server.port) as half:
            half.sendall(pack(["app", 1, {"log": "y" * 1000}])[:600])
            expected[half.getsockname()[1]] = "connection closed in the middle of a message (600 bytes unread)"
            wait_for(lambda: server.stats.connections == 5)
            time.sleep(0.05)

        with connect(server.port) as huge:
            expected[huge.getsockname()[1]] = "message larger than the 8 MiB limit"
            huge.sendall(b"\x93\xa3app\xdb" + (100 << 20).to_bytes(4, "big"))
            block = b"z" * (1 << 20)
            sent = 0
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                for _ in range(100):  # 100 MB in one str32 message
                    huge.sendall(block)
                    sent += len(block)
            assert sent < 40 << 20  # refused at the limit (plus socket buffers), not read to the end

        good.sendall(pack(["app", 2, {"log": "during"}, {"chunk": "g2"}]))
        assert msgpack.unpackb(good.recv(4096)) == {"ack": "g2"}
        assert recv_closed(silent) == b""
        silent.close()
        good.sendall(pack(["app", 3, {"log": "after"}, {"chunk": "g3"}]))
        assert msgpack.unpackb(good.recv(4096)) == {"ack": "g3"}
        good.close()
        wait_for(lambda: server.stats.problems == 5 and server.stats.active == 0)
    finally:
        server.stop()
    assert got.lines["line"].to_list() == ["before", "kept", "during", "after"]
    by_port = {int(p.split()[2].rstrip(":").rsplit(":", 1)[1]): p.split(": ", 1)[1] for p in problems}
    assert by_port == expected
    assert all(p.startswith("forward client 127.0.0.1:") for p in problems)
    assert list(server.stats.recent) == problems


def test_idle_between_messages_is_not_a_problem() -> None:
    server, got, problems = start_receiver(idle_timeout=0.3)
    try:
        with connect(server.port) as sock:
            sock.sendall(pack(["app", 1, {"log": "one"}]))
            assert recv_closed(sock) == b""  # closed after 0.3 s of silence; a client reconnects
    finally:
        server.stop()
    assert problems == [] and got.lines["line"].to_list() == ["one"]
