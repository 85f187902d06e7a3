"""The escalation settler is a background loop for the pod's life: one failing pass, whatever
its cause, must not end it (approved escalations would then never resume)."""

from __future__ import annotations

import asyncio

from pilothouse.runtime import desk


class _FlakySettler(desk.Settler):
    """The real loop; its pass fails with an unexpected error before it works."""

    def __init__(self) -> None:
        super().__init__(desk=None, interval=0.001)  # type: ignore[arg-type]
        self.passes = 0
        self.worked = asyncio.Event()

    async def settle_once(self) -> int:
        self.passes += 1
        if self.passes <= 2:
            raise RuntimeError("a bug in one pass")
        self.worked.set()
        return 0


async def test_an_unexpected_error_in_one_pass_does_not_stop_the_loop() -> None:
    settler = _FlakySettler()
    settler.start()
    try:
        await asyncio.wait_for(settler.worked.wait(), timeout=5)
    finally:
        await settler.close()
    assert settler.passes >= 3
