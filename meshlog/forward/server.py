"""A TCP forward-protocol receiver: clients in, lines frames out to a callback, acks back.

asyncio, not a thread per connection: one loop owns every socket, the idle timeout is a
``wait_for`` on the read, and stopping is one event that every connection sees. The
callback (parsing, writing rows) runs on one worker thread, so the loop keeps reading other
clients while a batch is parsed, batches reach the callback one at a time (no locks needed
by the caller), and a connection sends its acks only after the callback has returned.

A client that misbehaves (garbage, a half message, silence, an oversized message, a wrong
shared key) costs one problem line in ``stats`` and its own connection, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Self

import polars as pl

from meshlog.errors import MeshlogError
from meshlog.forward.limits import IDLE_TIMEOUT
from meshlog.forward.protocol import MAX_MESSAGE_BYTES, Batch, ForwardDecoder, ForwardError, HandshakeError
from meshlog.forward.records import LineAssembler

READ_BYTES = 64 << 10

LinesCallback = Callable[[pl.DataFrame], None]


class ListenError(MeshlogError):
    """The receiver could not listen on the address asked for (in use, not local, no permission)."""


@dataclass
class ForwardStats:
    """What the receiver did so far. ``problems`` counts client-side failures (each also said to
    ``on_problem``); ``recent`` keeps the last 100 of those messages."""

    connections: int = 0
    active: int = 0
    messages: int = 0
    events: int = 0
    lines: int = 0
    acks: int = 0
    ignored: int = 0  # events of non-log signals (fluent-bit metrics, traces)
    problems: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=100))


class ForwardServer:
    """Listen on ``host:port`` for fluentd / fluent-bit ``forward`` output and hand lines frames on.

    ``on_lines`` gets one frame per received batch (``source, line_no, captured_at, pod,
    namespace, container, stream, line``). Use ``start()``/``stop()`` (a background thread;
    also a context manager) or ``run()`` to serve in the calling thread until ``stop()``.
    """

    def __init__(
        self,
        on_lines: LinesCallback,
        *,
        host: str = "127.0.0.1",
        port: int = 24224,
        shared_key: str | None = None,
        hostname: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.stats = ForwardStats()
        self.assembler = LineAssembler()
        self._on_lines = on_lines
        self._on_problem = on_problem
        self._shared_key = shared_key
        self._hostname = hostname
        self._max_message_bytes = max_message_bytes
        self._idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._reading: dict[asyncio.Task[None], bool] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self, on_ready: Callable[[ForwardServer], None] | None = None) -> None:
        """Serve in this thread until ``stop()``; then hand over unfinished partial lines and return.

        Raises ``ListenError`` if the address cannot be bound, or what ``on_lines`` raised.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshlog-forward-lines")
        try:
            asyncio.run(self._main(on_ready))
        finally:
            self._executor.shutdown(wait=True)
        if self._failure is not None:
            raise self._failure

    def start(self, timeout: float = 10.0) -> Self:
        """Serve on a background thread; returns once listening (``port`` is then the bound port)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                self.run(on_ready=lambda _: ready.set())
            except Exception as exc:  # any exception: handed to start() or stop()
                errors.append(exc)
                self._failure = exc
                ready.set()

        self._thread = threading.Thread(target=target, name="meshlog-forward", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise ListenError(f"{self.host}:{self.port}: the receiver did not start in {timeout:g} s")
        if errors:
            raise errors[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, close every connection, hand over what is left. Safe from any thread
        (and from a signal handler)."""
        self._stop_requested.set()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._failure is not None and not isinstance(self._failure, ListenError):
                failure, self._failure = self._failure, None
                raise failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self, on_ready: Callable[[ForwardServer], None] | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise ListenError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = server.sockets[0].getsockname()[1]
        if self._stop_requested.is_set():
            self._stopping.set()
        if on_ready is not None:
            on_ready(self)
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task, reading in list(self._reading.items()):
                if reading:  # idle in a read: nothing in flight, close now
                    task.cancel()
            await asyncio.gather(*self._reading, return_exceptions=True)
            await server.wait_closed()
            if self._failure is None:
                rest = self.assembler.flush()
                if rest.height:
                    await self._hand_over(rest)

    # -- one connection ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._stopping is not None
        self._reading[task] = False
        peer_addr = writer.get_extra_info("peername")
        peer = f"{peer_addr[0]}:{peer_addr[1]}" if isinstance(peer_addr, tuple) else str(peer_addr)
        self.stats.connections += 1
        self.stats.active += 1
        decoder = ForwardDecoder(
            shared_key=self._shared_key, hostname=self._hostname, max_message_bytes=self._max_message_bytes
        )
        received = 0
        try:
            hello = decoder.greeting()
            if hello:
                writer.write(hello)
                await writer.drain()
            while not self._stopping.is_set():
                self._reading[task] = True
                try:
                    data = await asyncio.wait_for(reader.read(READ_BYTES), self._idle_timeout)
                except TimeoutError:
                    self._idle(peer, received, decoder)
                    break
                finally:
                    self._reading[task] = False
                if not data:
                    decoder.close()
                    break
                received += len(data)
                batch = decoder.feed(data)
                if not await self._accept(batch, writer, peer):
                    break  # the callback failed: no ack, the sender keeps its events
        except HandshakeError as exc:
            self._problem(peer, f"handshake failed: {exc}")
            if exc.reply:
                writer.write(exc.reply)
                await _drain_quietly(writer)
        except ForwardError as exc:
            if exc.partial is not None:  # what came before the failure is good: keep it, ack it
                with contextlib.suppress(ConnectionError):
                    await self._accept(exc.partial, writer, peer)
            self._problem(peer, str(exc))
        except ConnectionError as exc:
            pending = decoder.pending_bytes
            where = f" in the middle of a message ({pending} bytes unread)" if pending else ""
            if pending or not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                self._problem(peer, f"connection lost{where}: {exc.strerror or type(exc).__name__}")
        except asyncio.CancelledError:
            pass  # stopping
        finally:
            self.stats.active -= 1
            self._reading.pop(task, None)
            writer.close()
            await _drain_quietly(writer, close=True)

    async def _accept(self, batch: Batch, writer: asyncio.StreamWriter, peer: str) -> bool:
        """Hand the batch's lines over, then send its acks (never before)."""
        for reason in batch.skipped:
            self._problem(peer, f"skipped: {reason}")
        self.stats.messages += batch.messages
        self.stats.events += len(batch.events)
        self.stats.ignored += batch.ignored
        if batch.events:
            frame = self.assembler.lines(batch.events)
            if frame.height and not await self._hand_over(frame):
                return False
        if batch.replies:
            writer.write(b"".join(batch.replies))
            await writer.drain()
            self.stats.acks += batch.acks
        return True

    def _idle(self, peer: str, received: int, decoder: ForwardDecoder) -> None:
        if not received:
            self._problem(peer, f"sent nothing for {self._idle_timeout:g} s; closed")
        elif decoder.pending_bytes:
            self._problem(
                peer,
                f"idle for {self._idle_timeout:g} s in the middle of a message "
                f"({decoder.pending_bytes} bytes unread); closed",
            )
        # idle between messages: a keepalive connection with nothing to say; the client reconnects

    async def _hand_over(self, frame: pl.DataFrame) -> bool:
        assert self._loop is not None and self._executor is not None
        try:
            await self._loop.run_in_executor(self._executor, self._on_lines, frame)
        except Exception as exc:  # the caller's (stdout closed, …): stop, raise it from run()
            if self._failure is None:
                self._failure = exc
            assert self._stopping is not None
            self._stopping.set()
            return False
        self.stats.lines += frame.height
        return True

    def _problem(self, peer: str, message: str) -> None:
        text = f"forward client {peer}: {message}"
        self.stats.problems += 1
        self.stats.recent.append(text)
        if self._on_problem is not None:
            self._on_problem(text)


async def _drain_quietly(writer: asyncio.StreamWriter, *, close: bool = False) -> None:
    try:
        if close:
            await writer.wait_closed()
        else:
            await writer.drain()
    except (ConnectionError, OSError):
        pass
