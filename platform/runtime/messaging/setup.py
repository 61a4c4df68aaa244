"""Builds the MessagingService from settings: SMTP when CRMKIT_SMTP_HOST is set, HTTP gateways when their URLs are."""
from __future__ import annotations

from sqlalchemy import Engine

from ..config import Settings
from ..jobs import JobService
from .providers import HttpJsonProvider, LoggingProvider, SmtpEmailProvider
from .ratelimit import RateLimiter
from .service import MessagingService


def build_messaging(settings: Settings, engine: Engine, jobs: JobService) -> MessagingService:
    email = (SmtpEmailProvider(settings.smtp_host, settings.smtp_port, sender=settings.smtp_from, user=settings.smtp_user,
                               password=settings.smtp_password, starttls=settings.smtp_starttls)
             if settings.smtp_host else LoggingProvider())
    sms = HttpJsonProvider(settings.sms_url, settings.sms_key) if settings.sms_url else LoggingProvider()
    wechat = HttpJsonProvider(settings.wechat_url, settings.wechat_key) if settings.wechat_url else LoggingProvider()
    redis = None
    if settings.redis_url:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(settings.redis_url)
    limiter = RateLimiter(engine, settings.message_rate_per_minute, redis=redis)
    service = MessagingService(engine, jobs, {"email": email, "sms": sms, "wechat": wechat}, limiter)
    service.register_jobs(jobs.registry)
    return service
