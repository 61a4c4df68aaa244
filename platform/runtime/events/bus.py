"""The subscriber registry. Delivery is at-least-once, so handlers must be idempotent (key on ``event.id``)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

ANY = "*"


@dataclass(frozen=True)
class Event:
    id: int
    topic: str          # record.created / record.updated / record.deleted / record.restored
    entity: str         # "<app>.<entity>"
    record_id: int
    payload: dict
    created_at: dt.datetime


EventHandler = Callable[[Event], None]


class EventBus:
    """``subscribe(key, handler)``: ``key`` is a topic ("record.updated"), an entity ("membership.member"),
    ``"<entity>:<topic>"`` for both, or ``"*"`` for every event."""

    def __init__(self):
        self._handlers: list[tuple[str, EventHandler]] = []

    def subscribe(self, key: str, handler: EventHandler) -> None:
        if not key or not isinstance(key, str):
            raise ValueError("subscribe to a topic, an entity, '<entity>:<topic>' or '*'")
        if not callable(handler):
            raise TypeError("an event handler is callable as handler(event)")
        self._handlers.append((key, handler))

    def handlers_for(self, event: Event) -> list[EventHandler]:
        keys = {ANY, event.topic, event.entity, f"{event.entity}:{event.topic}"}
        return [h for k, h in self._handlers if k in keys]
