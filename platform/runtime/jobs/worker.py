"""``crmkit worker``: the Huey consumer, the periodic scheduler, and a reaper thread for expired leases."""
from __future__ import annotations

import logging
import os
import signal
import threading

from huey.consumer import Consumer

log = logging.getLogger(__name__)


def build_consumer(services, *, workers: int = 2) -> Consumer:
    """The consumer for this process, with every registered periodic kind scheduled on it."""
    jobs = services.jobs
    queue = jobs.queue
    for periodic in jobs.registry.periodic_jobs():
        queue.add_periodic(f"crmkit.periodic.{periodic.kind}", periodic.schedule,
                           lambda p=periodic: jobs.submit_periodic(p.kind, p.payload))
    return Consumer(queue.huey, workers=workers, worker_type="thread", periodic=True, initial_delay=0.1, max_delay=1.0,
                    check_worker_health=True)


class Reaper(threading.Thread):
    """Every half lease: requeue running jobs whose worker died (stale heartbeat) and queued jobs the queue lost."""

    def __init__(self, services, parent_pid: int | None = None):
        super().__init__(name="crmkit-reaper", daemon=True)
        self.services = services
        self.parent_pid = parent_pid
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = max(0.5, self.services.jobs.lease_seconds / 2)
        while True:
            try:
                self.services.jobs.reap()
            except Exception:
                log.exception("reaping expired job leases failed")
            if self.stopping.wait(interval):
                return
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("the web server (pid %s) is gone; stopping this worker", self.parent_pid)
                os.kill(os.getpid(), signal.SIGINT)  # Huey's graceful stop
                return


def run_worker(services, *, workers: int = 2, parent_pid: int | None = None) -> None:
    consumer = build_consumer(services, workers=workers)
    reaper = Reaper(services, parent_pid)
    reaper.start()
    try:
        consumer.run()
    finally:
        reaper.stopping.set()
