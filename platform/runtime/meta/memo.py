"""Values derived from one compiled catalog (compiled rules, rollup indexes), forgotten with it.

Keyed by the catalog object itself through a weak reference, so a recompiled catalog never sees
values built from the one before (an ``id()`` key could be reused by a new object)."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Hashable


class CatalogMemo:
    def __init__(self, max_items: int = 4096):
        self._lock = threading.Lock()
        self._ref: weakref.ref | None = None
        self._data: dict[Hashable, Any] = {}
        self._max = max_items

    def get(self, catalog: Any, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            if self._ref is None or self._ref() is not catalog:
                self._ref = weakref.ref(catalog)
                self._data = {}
            if key in self._data:
                return self._data[key]
        value = build()
        with self._lock:
            if self._ref() is catalog:
                if len(self._data) >= self._max:
                    self._data.clear()
                self._data[key] = value
        return value
