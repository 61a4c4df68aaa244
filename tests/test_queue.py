"""The queue under the jobs: SQLite-backed Huey by default, Redis-backed with CRMKIT_REDIS_URL; both carry job ids."""
from __future__ import annotations

import dataclasses

import redis as redis_lib
from huey import RedisHuey, SqliteHuey

from conftest import make_settings
from crmkit.runtime.services import Services

REDIS_URL = "redis://127.0.0.1:6379/14"


def drain(huey) -> int:
    """Execute every queued Huey task the way a consumer would."""
    n = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        n += 1
    return n


def check_queue_runs_jobs(services, huey_class):
    huey = services.background.queue.huey
    assert isinstance(huey, huey_class)
    drain(huey)
    services.jobs.registry.register("test.via_queue", lambda ctx, p: {"doubled": p["x"] * 2})
    job_id = services.jobs.submit("test.via_queue", {"x": 21}, actor=None)
    assert huey.pending_count() == 1
    assert drain(huey) == 1
    row = services.jobs.get(job_id)
    assert row["status"] == "succeeded" and row["result"] == {"doubled": 42}


def test_sqlite_huey_file_under_the_var_dir(databases, tmp_path):
    services = Services.build(make_settings(databases.fresh("base"), tmp_path))
    try:
        check_queue_runs_jobs(services, SqliteHuey)
        assert (tmp_path / "var" / "huey.db").exists()
    finally:
        services.engine.dispose()


def test_redis_huey_when_redis_is_configured(databases, tmp_path):
    redis_lib.Redis.from_url(REDIS_URL).flushdb()
    services = Services.build(dataclasses.replace(make_settings(databases.fresh("base"), tmp_path), redis_url=REDIS_URL))
    try:
        check_queue_runs_jobs(services, RedisHuey)
        assert services.messaging.limiter.redis is not None  # the rate limit counts in Redis too
    finally:
        services.engine.dispose()
        redis_lib.Redis.from_url(REDIS_URL).flushdb()
