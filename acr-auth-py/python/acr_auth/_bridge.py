"""Glue between the Rust runtime and asyncio.

``await_native(start)`` is the coroutine behind every ``*_async`` method: ``start()`` runs inside
the loop, starts the Rust work and returns an asyncio future that ``complete`` resolves, from the
Rust runtime, through ``loop.call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
from typing import Any


def complete(future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def await_native(start: Any) -> Any:
    return await start()
