"""Gather what a producer thread reads into batches bounded by size *or* time, whichever comes first.

Parsing costs a fixed amount per batch, so a pipe read (~64 KiB) parsed on its own is ~20x
slower per line than an 8 MiB block of a file. Batching by size gives a pipe a file's
throughput; the time bound keeps a live ``kubectl logs -f`` on screen within ``max_wait`` of a
line arriving. The producer (reading, decompressing) runs in its own thread, beside the parsing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_WAIT = 0.15  # seconds from a batch's first block to its hand-over, at most
READ_BYTES = 1 << 20  # one read of the producer
QUEUE_BLOCKS = 32  # blocks read ahead at most (bounded memory: 32 MiB)


@dataclass(frozen=True)
class Batch:
    """Blocks read together; ``paused`` when the source had nothing more when the batch closed
    (a live stream: parse it now rather than wait for more)."""

    blocks: list[bytes]
    paused: bool

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.blocks)


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Gatherer:
    """Read ``read(READ_BYTES)`` on a daemon thread until it returns ``b""``; iterate for batches.

    A read error ends the stream: the batches before it come first, then the error is raised.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        *,
        max_bytes: int,
        max_wait: float = MAX_WAIT,
        read_bytes: int = READ_BYTES,
        name: str = "meshlog-reader",
    ) -> None:
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self._read = read
        self._read_bytes = min(read_bytes, max_bytes)
        self._queue: queue.Queue[bytes | _End] = queue.Queue(QUEUE_BLOCKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                block = self._read(self._read_bytes)
                if not block:
                    break
                self._put(block)
        except BaseException as exc:  # any exception: handed to the consumer, raised there
            self._put(_End(exc))
            return
        self._put(_End())

    def _put(self, item: bytes | _End) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    @property
    def idle(self) -> bool:
        """Nothing read ahead right now: whatever comes next, the source has yet to send."""
        return self._queue.empty()

    def close(self) -> None:
        """Stop reading (the consumer went away); a blocked read ends when its source does."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait for the reading thread to end (before its stream is closed under it)."""
        self._thread.join(timeout)

    def __iter__(self) -> Iterator[Batch]:
        end: _End | None = None
        try:
            while end is None:
                item = self._queue.get()
                if isinstance(item, _End):
                    end = item
                    break
                blocks, size = [item], len(item)
                deadline = time.monotonic() + self.max_wait
                paused = False
                while size < self.max_bytes:
                    left = deadline - time.monotonic()
                    try:
                        item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        paused = True
                        break
                    if isinstance(item, _End):
                        end = item
                        break
                    blocks.append(item)
                    size += len(item)
                yield Batch(blocks, paused)
        finally:
            self.close()
        if end.error is not None:
            raise end.error
