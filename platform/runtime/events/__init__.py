"""Record events from the transactional outbox, dispatched after commit to registered subscribers."""
from .bus import Event, EventBus, EventHandler
from .dispatch import OutboxDispatcher

__all__ = ["Event", "EventBus", "EventHandler", "OutboxDispatcher"]
