"""The worker's collector settings: start-up objects frozen, young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from certrecon.worker.runtime import YOUNG_COLLECTION_THRESHOLD, settle_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_objects_alive_at_start_up_are_frozen_and_young_collections_rarer() -> None:
    alive: object = type("Alive", (), {})()
    _, older, oldest = gc.get_threshold()
    settle_heap()
    assert gc.get_freeze_count() > 0
    # Frozen objects are out of every generation the collector scans.
    assert gc.is_tracked(alive)
    assert not any(o is alive for o in gc.get_objects())
    assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, older, oldest)
