"""What `create_app` sets up for the life of the server."""

from __future__ import annotations

import gc

from tests.conftest import make_settings, running


async def test_startup_objects_are_frozen_out_of_collections_while_serving() -> None:
    before = gc.get_freeze_count()
    async with running(make_settings()):
        serving = gc.get_freeze_count()
    assert serving > before
    assert gc.get_freeze_count() == 0
