"""The background sealer: on PostgreSQL, audit entries are chained off the writer's thread, right after its commit.

Sealing takes several statements (take the chain head, read what is pending, write the entries' places, move the head,
look again). Run by every writer after its commit, that was over a third of a points posting's cost and added to every
request's latency. Instead the committed writer wakes its process's sealer (one per engine, a thread started on first
use) and returns. The sealer lets commits gather for a few milliseconds, then seals everything pending in one go, so
under load one seal covers many entries; entries are chained within tens of milliseconds of their commit.

- Nothing waits on the chain head: a sealer that finds it taken (``SKIP LOCKED``) tries again after the next gathering
  pause, so each wake-up is followed by at least one read of the pending entries under the head lock.
- ``flush_sealer`` waits until this process's sealer is idle; ``seal_now`` seals synchronously (verification, the CLI).
- The thread belongs to the process that started it: a forked child (gunicorn, the job worker) starts its own.
- It ends after a second without work, and at interpreter exit what this process woke it for is sealed. A crash leaves
  entries pending, never lost: the next seal by anyone (at the latest the worker's minute tick) takes them.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref

from sqlalchemy import Connection, Engine

from .seal import seal_if_free

log = logging.getLogger(__name__)

IDLE_SECONDS = 1.0
GATHER_SECONDS = 0.02  # how long commits gather before a seal: fewer, larger seals under load


class Sealer:
    """Seals ``engine``'s pending audit entries on a thread of its own whenever woken."""

    def __init__(self, engine: Engine):
        self._engine = weakref.ref(engine)  # the registry's value must not keep its key alive
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._woken = False  # work arrived since the sealer last looked
        self._running = False  # the thread exists (it may be waiting for work)
        self._busy = False  # the thread is sealing

    def wake(self) -> None:
        """Ask for a seal soon; returns at once."""
        if self._pid != os.getpid():  # a forked child: the parent's thread and lock state are not ours
            self._reset()
        with self._cond:
            self._woken = True
            if self._running:
                self._cond.notify()
                return
            self._running = True
        threading.Thread(target=self._run, name="crmkit-audit-sealer", daemon=True).start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every seal this process asked for has run; False if ``timeout`` passed first."""
        if self._pid != os.getpid():
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not (self._woken or self._busy), timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._woken:
                    self._cond.wait(IDLE_SECONDS)
                if not self._woken:
                    self._running = False
                    return
                self._busy = True
            time.sleep(GATHER_SECONDS)
            with self._cond:
                self._woken = False
            done = False
            try:
                done = self._seal()
            finally:
                with self._cond:
                    self._woken = self._woken or not done  # the head was taken: look again after the next pause
                    self._busy = False
                    self._cond.notify_all()

    def _seal(self) -> bool:
        """One pass; False if another sealer held the head."""
        engine = self._engine()
        if engine is None:
            return True
        try:
            with engine.connect() as conn:
                return seal_if_free(conn)
        except Exception:  # noqa: BLE001 - e.g. no connection: the entries stay pending for the next seal
            log.exception("sealing audit entries failed; they stay pending until the next seal")
            return True


_SEALERS: weakref.WeakKeyDictionary[Engine, Sealer] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def sealer_for(engine: Engine) -> Sealer:
    sealer = _SEALERS.get(engine)
    if sealer is None:
        with _REGISTRY_LOCK:
            if not _SEALERS:  # the first sealer (again, after all were collected): unregister first, so never twice
                atexit.unregister(_flush_all_at_exit)
                atexit.register(_flush_all_at_exit)
            sealer = _SEALERS.setdefault(engine, Sealer(engine))
    return sealer


def wake_sealer(conn: Connection) -> None:
    """An ``after_commit`` hook: the transaction wrote audit entries, have them sealed."""
    sealer_for(conn.engine).wake()


def flush_sealer(engine: Engine, timeout: float = 10.0) -> bool:
    """Wait for ``engine``'s background seals in this process (see ``Sealer.flush``)."""
    sealer = _SEALERS.get(engine)
    return True if sealer is None else sealer.flush(timeout)


def _flush_all_at_exit() -> None:
    """What this process's writers committed is sealed before it exits (the sealer threads are daemons)."""
    for sealer in list(_SEALERS.values()):
        sealer.flush(timeout=5.0)
