"""The local store as the fetch path uses it: optional. The first StoreError (a full disk, a
broken index) becomes one warning, and from then on the fetch goes on as if there were no
store: lookups miss, writes are skipped, locks are not taken. Nothing cached is touched."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bsr_team_cache.errors import StoreError
from bsr_team_cache.store.local import LocalStore

# What each method answers once the store is out of use (anything else: None).
_MISSING: dict[str, Callable[[], Any]] = {
    "contains": lambda: False,
    "labels": list,
    "entries": list,
    "usage_events": list,
    "indexed": dict,
}


class FallibleStore:
    def __init__(self, store: LocalStore, warnings: list[str]) -> None:
        self._store = store
        self._warnings = warnings
        self.broken = False

    def fail(self, exc: StoreError) -> None:
        if not self.broken:
            self.broken = True
            self._warnings.append(f"{exc}; going on without the local store")

    def using(self, keys: Iterable[Any]) -> contextlib.AbstractContextManager:
        return self._locks(self._store.using, keys)

    def filling(self, keys: Iterable[Any]) -> contextlib.AbstractContextManager:
        return self._locks(self._store.filling, keys)

    @contextlib.contextmanager
    def _locks(self, take: Callable[[Iterable[Any]], Any], keys: Iterable[Any]) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            if not self.broken:
                try:
                    held.enter_context(take(keys))
                except StoreError as exc:
                    self.fail(exc)
            yield

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The store's batch; its final commit failing is a warning like any store failure."""
        if self.broken:
            yield
            return
        batch = self._store.batch()
        batch.__enter__()
        try:
            yield
        finally:
            try:
                batch.__exit__(None, None, None)
            except StoreError as exc:
                self.fail(exc)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not callable(method):
            return method
        missing = _MISSING.get(name, lambda: None)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.broken:
                return missing()
            try:
                return method(*args, **kwargs)
            except StoreError as exc:
                self.fail(exc)
                return missing()

        return call
