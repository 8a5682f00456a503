"""The one per-process cache of loaded models, for every kind.

Keys are ``(artifact, variant)``: ``artifact`` names the artifact by its hash (the registry's
``artifact_key``: ids alone are reused by SQLite), ``variant`` how it is served (``True``: the int8 path;
``"bf16"``: the bf16 encoder, ``core.ml.bf16``).
Thread-safe; each key is loaded once even when many threads ask at the same time (other keys load in
parallel); least recently used entries are evicted beyond ``max_size``. A *pinned* entry (the base encoder,
which knowledge-base search uses before an organisation has its own model) is never evicted and does not
count towards ``max_size``. :meth:`batcher` gives the key's :class:`MicroBatcher`, one per loaded model;
evicting the model closes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from core.ml.batching import MicroBatcher
from core.ml.errors import MLError

Key = tuple[str, bool | str]


class ModelCache:
    def __init__(self, *, max_size: int = 4) -> None:
        if max_size < 1:
            raise MLError("The model cache's max_size must be at least 1.")
        self.max_size = max_size
        self._items: OrderedDict[Key, Any] = OrderedDict()
        self._pinned: dict[Key, Any] = {}
        self._batchers: dict[Key, MicroBatcher] = {}
        self._lock = threading.Lock()
        self._loading: dict[Key, threading.Lock] = {}

    def _hit(self, key: Key) -> tuple[bool, Any]:
        if key in self._pinned:
            return True, self._pinned[key]
        if key in self._items:
            self._items.move_to_end(key)
            return True, self._items[key]
        return False, None

    def fetch(self, key: Key, load: Callable[[], Any], *, pinned: bool = False) -> Any:
        """The model under ``key``, loaded by ``load()`` on a miss (once, whatever the concurrency)."""
        with self._lock:
            found, model = self._hit(key)
            if found:
                return model
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one loader per key; other keys load in parallel
            with self._lock:
                found, model = self._hit(key)
                if found:
                    return model
            model = load()
            self._insert(key, model, pinned)
            return model

    def batcher(
        self, key: Key, load: Callable[[], Any], *, max_batch: int = 32, max_wait_ms: float = 0.0
    ) -> MicroBatcher:
        """The micro-batcher in front of the key's model (created with the first request)."""
        model = self.fetch(key, load)
        stale = None
        with self._lock:
            current = self._batchers.get(key)
            if current is None or current.predictor is not model:
                stale = current
                current = MicroBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms)
                self._batchers[key] = current
        if stale is not None:
            stale.close()
        return current

    def _insert(self, key: Key, model: Any, pinned: bool) -> None:
        with self._lock:
            self._loading.pop(key, None)
            if pinned:
                self._pinned[key] = model
                return
            self._items[key] = model
            self._items.move_to_end(key)
            evicted = []
            while len(self._items) > self.max_size:
                evicted.append(self._items.popitem(last=False)[0])
            closing = [self._batchers.pop(k) for k in evicted if k in self._batchers]
        for batcher in closing:  # outside the lock: close() waits for the batcher's queued requests
            batcher.close()

    def keys(self) -> list[Key]:
        """Cached (unpinned) keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            return key in self._items or key in self._pinned

    def evict(self, artifact: str) -> None:
        """Forget every variant of ``artifact`` (pinned ones too) and close their batchers."""
        with self._lock:
            doomed = [k for k in self._items if k[0] == artifact]
            for key in doomed:
                del self._items[key]
            for key in [k for k in self._pinned if k[0] == artifact]:
                del self._pinned[key]
            closing = [self._batchers.pop(k) for k in doomed if k in self._batchers]
        for batcher in closing:
            batcher.close()
