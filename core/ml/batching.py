"""Micro-batching: many threads each asking for a few predictions become one forward pass.

A worker thread takes the first waiting request, keeps collecting requests for up to ``max_wait_ms`` or until
``max_batch`` texts, runs one ``predict`` over all of them and hands every caller back its own slice. Callers
that want the encoder's vectors (``embed``: a chat message classified from them, then searched for in the
knowledge base) are batched the same way, in one ``embed`` pass of their own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from core.ml.errors import BatcherClosed, MLError
from core.ml.predictions import Prediction, SupportsPredict


@dataclass
class _Request:
    texts: list[str]
    embed: bool = False  # the encoder's vectors (an (N, H) tensor), not predictions
    future: Future[Any] = field(default_factory=Future)


class MicroBatcher:
    """Wraps a predictor; ``predict`` is safe to call from many threads at once."""

    def __init__(self, predictor: SupportsPredict, *, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise MLError("MicroBatcher needs max_batch >= 1 and max_wait_ms >= 0.")
        self.predictor, self.max_batch, self.max_wait_s = predictor, max_batch, max_wait_ms / 1000.0
        self.batches_run = 0  # forward passes made, for metrics and tests
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._state = threading.Lock()  # no request can be queued behind the stop sentinel
        self._worker = threading.Thread(target=self._run, name="ml-microbatcher", daemon=True)
        self._worker.start()

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Prediction]:
        """Predictions for ``texts``, computed together with whatever other threads asked for meanwhile."""
        if not texts:
            return []
        return self._ask(_Request(list(texts)), timeout)

    def embed(self, texts: Sequence[str], timeout: float | None = None) -> Any:
        """The predictor's ``embed`` of ``texts`` ((N, H) vectors), computed in one pass with whatever other
        threads asked to embed meanwhile (float versions: padding aside, each text's vector as alone)."""
        if not hasattr(self.predictor, "embed"):
            raise MLError("This model has no encoder to embed with.")
        return self._ask(_Request(list(texts), embed=True), timeout)

    def _ask(self, request: _Request, timeout: float | None) -> Any:
        with self._state:
            if self._closed:
                raise BatcherClosed("The micro-batcher is closed.")
            self._queue.put(request)
        return request.future.result(timeout=timeout)

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item.texts)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._collect(first)
            self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        for embed in (False, True):  # one pass for the predictions asked for, one for the vectors
            requests = [request for request in batch if request.embed is embed]
            if not requests:
                continue
            texts = [text for request in requests for text in request.texts]
            try:
                out = getattr(self.predictor, "embed" if embed else "predict")(texts)
            except BaseException as exc:  # every waiting caller gets the error, the worker lives on
                for request in requests:
                    request.future.set_exception(exc)
                continue
            self.batches_run += 1
            start = 0
            for request in requests:
                request.future.set_result(out[start : start + len(request.texts)])
                start += len(request.texts)

    def close(self) -> None:
        """Finish queued requests, then stop the worker; later calls raise :class:`BatcherClosed`."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._worker.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
