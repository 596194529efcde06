"""Real-time hand-over between the live session's threads: only the newest item waits, older ones are dropped.

A camera or stream does not wait for the model, so a queue between them would grow (and the latency with it)
whenever the model is slower than the source. :class:`NewestOnly` holds at most one item: a new item replaces
the one still waiting, which counts as dropped. The same slot sits between the model and each output.
"""
import threading
import time
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class NewestOnly(Generic[T]):
    """A one-item mailbox: ``put`` replaces a waiting item (counted in ``dropped``), ``take`` returns the newest.

    While the gate is shut (``gated=True`` until :meth:`open_gate`) items are discarded and counted in
    ``skipped``: frames that arrive while the model is still being compiled and warmed up. :meth:`close` ends the
    stream of items; ``take`` then returns what is still waiting, and None afterwards.
    """

    def __init__(self, *, gated: bool = False) -> None:
        self._condition = threading.Condition()
        self._item: Optional[T] = None
        self._has_item = False
        self._gate_open = not gated
        self.closed = False
        self.put_count = 0
        self.dropped = 0
        self.skipped = 0

    def put(self, item: T) -> None:
        """Offer ``item``; it replaces (drops) any item not yet taken. Ignored once closed."""
        with self._condition:
            if self.closed:
                return
            if not self._gate_open:
                self.skipped += 1
                return
            self.put_count += 1
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._condition.notify_all()

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The newest item, waiting up to ``timeout`` seconds (None: until one comes or the slot closes)."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._has_item or self.closed, timeout=timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            self._condition.notify_all()
            return item

    def wait_empty(self, timeout: float) -> bool:
        """Wait until the waiting item has been taken (or the slot closed); False when ``timeout`` passed first."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._has_item or self.closed, timeout=timeout)

    def open_gate(self) -> None:
        """From now on items are kept (see the class docstring)."""
        with self._condition:
            self._gate_open = True

    def close(self) -> None:
        """No more items will come; wake every waiter."""
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    @property
    def finished(self) -> bool:
        """Closed and nothing left to take."""
        with self._condition:
            return self.closed and not self._has_item


def sleep_until(deadline: float, stop: threading.Event) -> bool:
    """Sleep until ``time.monotonic()`` reaches ``deadline``; return False early when ``stop`` is set."""
    delay = deadline - time.monotonic()
    if delay <= 0:
        return not stop.is_set()
    return not stop.wait(delay)
