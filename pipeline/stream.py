"""Streaming tasks through a Dask cluster with a bounded number in flight.

The client never holds a graph of the whole job: work is drawn from an iterator only while fewer than
`max_in_flight` tasks are live, so the client's memory depends on that bound, not on the size of the
region. Retries are Dask's own: `retries` for a task that raised, and the scheduler's
`distributed.scheduler.allowed-failures` for a task whose worker died under it. A `TaskLedger` on the
scheduler counts, from the scheduler's side, how often each task of the stream started and how many were
live at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from distributed import SchedulerPlugin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """One task of the stream that has ended, successfully or not."""

    kind: str  # 'predict', 'vote', …: the first part of the task's key
    ident: str  # what it worked on, e.g. a block-year 'r12c34-2019'
    result: Any = None
    error: str | None = None  # 'ExceptionType: message' when it failed for good


class TaskLedger(SchedulerPlugin):
    """Scheduler plugin: for the tasks of one stream (keys ending in '-SESSION'), how many times each was
    started (more than once: retried after an error or a lost worker) and the most that were live at once."""

    def __init__(self, session: str):
        self.name = f"mapgen-ledger-{session}"
        self.suffix = f"-{session}"
        self.starts: dict[str, int] = {}
        self.retried: list[str] = []
        self.peak = 0

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if not (isinstance(key, str) and key.endswith(self.suffix)):
            return
        if finish == "forgotten":
            if self.starts.pop(key, 0) > 1:
                self.retried.append(key)
            return
        starts = self.starts.setdefault(key, 0)
        if finish == "processing":
            self.starts[key] = starts + 1
        self.peak = max(self.peak, len(self.starts))


def _ledger_state(dask_scheduler, name: str) -> dict:
    ledger = dask_scheduler.plugins[name]
    retried = ledger.retried + [k for k, n in ledger.starts.items() if n > 1]
    return {"retried": retried, "peak": ledger.peak, "live": len(ledger.starts)}


class TaskStream:
    """Submit tasks under keys '{kind}-{ident}-{session}' and hand them back as they finish.

    `results(work)` draws callables from `work` (each submits zero or more tasks through `submit`) while
    fewer than `max_in_flight` tasks are live, and yields a `Finished` for every task that ends. The
    consumer may submit follow-up tasks while iterating. Leaving the loop early (an error, Ctrl-C)
    cancels what is still in flight.
    """

    def __init__(self, client, *, max_in_flight: int = 256, retries: int = 2, ledger: bool = True):
        from distributed import as_completed

        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.client = client
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.session = os.urandom(4).hex()
        self._live: dict[str, tuple[Any, str, str]] = {}  # key → (future, kind, ident)
        self._running = as_completed()
        self.submitted = 0
        self.peak_in_flight = 0
        self._ledger_name: str | None = None
        if ledger:
            plugin = TaskLedger(self.session)
            try:
                client.register_plugin(plugin)
                self._ledger_name = plugin.name
            except Exception as exc:  # e.g. a scheduler without mapgen installed: run on, without counts
                log.warning("no task ledger on the scheduler (%s); retries will not be counted", exc)

    @property
    def in_flight(self) -> int:
        return len(self._live)

    def submit(self, kind: str, ident: str, fn: Callable, *args, resources: dict[str, float] | None = None):
        """Submit `fn(*args)` as one task of the stream; returns its future (to pass to later tasks)."""
        key = f"{kind}-{ident}-{self.session}"
        future = self.client.submit(fn, *args, key=key, pure=False, retries=self.retries, resources=resources)
        self._live[key] = (future, kind, ident)
        self._running.add(future)
        self.submitted += 1
        self.peak_in_flight = max(self.peak_in_flight, len(self._live))
        return future

    def results(self, work: Iterable[Callable[[], object]]) -> Iterator[Finished]:
        work = iter(work)
        exhausted = False
        try:
            while True:
                while not exhausted and len(self._live) < self.max_in_flight:
                    step = next(work, None)
                    if step is None:
                        exhausted = True
                    else:
                        step()
                if not self._live:
                    if exhausted:
                        return
                    continue
                future = next(self._running)
                _, kind, ident = self._live.pop(future.key)
                if future.status == "error":
                    exc = future.exception()
                    finished = Finished(kind, ident, error=f"{type(exc).__name__}: {exc}")
                elif future.status == "cancelled":
                    finished = Finished(kind, ident, error="cancelled")
                else:
                    finished = Finished(kind, ident, result=future.result())
                future.release()
                yield finished
        finally:
            if self._live:
                self.client.cancel([f for f, _, _ in self._live.values()])
                self._live.clear()

    def ledger(self) -> dict:
        """{'retried': [keys started more than once], 'peak': most live at once} as the scheduler saw them;
        empty if no ledger could be registered."""
        if self._ledger_name is None:
            return {}
        return self.client.run_on_scheduler(_ledger_state, name=self._ledger_name)

    def close(self) -> None:
        if self._ledger_name is not None:
            try:
                self.client.unregister_scheduler_plugin(self._ledger_name)
            except Exception:  # the scheduler may be gone already; nothing of ours is left to lose
                pass
            self._ledger_name = None

