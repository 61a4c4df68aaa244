"""A per-channel send limit in fixed one-minute windows: in Redis when configured, else in the database."""
from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from ..db import write_transaction
from ..storage import platform_tables as pt

WINDOW = 60


class RateLimiter:
    def __init__(self, engine: Engine, per_minute: int, *, redis=None, prefix: str = "crmkit:rate"):
        self.engine, self.per_minute, self.redis, self.prefix = engine, per_minute, redis, prefix

    def hit(self, bucket: str, *, now: float | None = None) -> float | None:
        """Count one send; None when allowed, else the seconds until the window frees up."""
        now = time.time() if now is None else now
        window = int(now // WINDOW) * WINDOW
        wait = window + WINDOW - now
        allowed = self._redis_hit(bucket, window) if self.redis is not None else self._db_hit(bucket, window)
        return None if allowed else max(0.5, wait)

    def _redis_hit(self, bucket: str, window: int) -> bool:
        key = f"{self.prefix}:{bucket}:{window}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, WINDOW * 2)
        count, _ = pipe.execute()
        return count <= self.per_minute

    def _db_hit(self, bucket: str, window: int) -> bool:
        c = pt.rate_counter
        with write_transaction(self.engine) as conn:
            n = conn.execute(c.update().where(c.c.bucket == bucket, c.c.window_start == window, c.c.count < self.per_minute)
                             .values(count=c.c.count + 1)).rowcount
            if n == 1:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(c.insert().values(bucket=bucket, window_start=window, count=1))
            except IntegrityError:
                return False  # this window's row exists and is full
            conn.execute(c.delete().where(c.c.bucket == bucket, c.c.window_start < window - WINDOW))
            return self.per_minute >= 1
