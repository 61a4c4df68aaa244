"""Messaging: email (SMTP), SMS and WeChat (provider adapters), in-app notifications; consent, rate limits, delivery log."""
from .notifications import create_notification, list_notifications, mark_read, unread_count
from .providers import HttpJsonProvider, LoggingProvider, OutgoingMessage, Provider, ProviderError, SmtpEmailProvider
from .ratelimit import RateLimiter
from .service import CHANNELS, SEND_JOB, MessagingService
from .setup import build_messaging
from .templates import TemplateRefused, render

__all__ = [
    "CHANNELS", "SEND_JOB", "HttpJsonProvider", "LoggingProvider", "MessagingService", "OutgoingMessage", "Provider", "ProviderError",
    "RateLimiter", "SmtpEmailProvider", "TemplateRefused", "build_messaging", "create_notification", "list_notifications", "mark_read",
    "render", "unread_count",
]
