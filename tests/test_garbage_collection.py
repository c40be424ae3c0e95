"""A started worker keeps what it holds out of the garbage collector's passes."""

from __future__ import annotations

import gc

from starlette.applications import Starlette

from usagegraph.garbage_collection import MIDDLE_THRESHOLD, OLD_THRESHOLD


async def test_a_started_app_freezes_its_objects_and_collects_young_ones_less_often(
    app: Starlette,
) -> None:
    assert gc.get_freeze_count() > 0
    young = app.state.settings.gc_young_threshold
    assert gc.get_threshold() == (young, MIDDLE_THRESHOLD, OLD_THRESHOLD)
