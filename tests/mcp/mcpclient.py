"""The official MCP Python SDK driving `vibesync mcp` over stdio, with Blender pumped while
the client waits (the bpy module has no event loop of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from mcp import ClientSession, StdioServerParameters, stdio_client, types

from harness import bpy, vibesync

SENTINEL_TIMEOUT = 30.0


def pump() -> None:
    bpy.context.view_layer.update()
    vibesync.tick(20.0)


async def pumped(coro, timeout: float = SENTINEL_TIMEOUT, what: str = "MCP call", pump_blender: bool = True):
    """Await `coro` while ticking Blender's pump; fail at the deadline."""
    task = asyncio.ensure_future(coro)
    end = time.monotonic() + timeout
    while not task.done():
        if pump_blender:
            pump()
        await asyncio.sleep(0.005)
        if time.monotonic() > end:
            task.cancel()
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return task.result()


async def until(cond, timeout: float = 10.0, what: str = "condition", pump_blender: bool = True):
    end = time.monotonic() + timeout
    while True:
        if pump_blender:
            pump()
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class Notes:
    """Notifications the server sent."""

    def __init__(self) -> None:
        self.list_changed = 0
        self.progress: list = []

    async def __call__(self, message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.list_changed += 1


@contextlib.asynccontextmanager
async def mcp_session(binary: str, data_dir: str, project_id: str):
    params = StdioServerParameters(command=binary, args=["mcp", "--data-dir", data_dir, "--project", project_id],
                                   env={"RUST_LOG": "warn"})
    notes = Notes()
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=notes) as session:
            session.notes = notes
            yield session


def body(result) -> dict:
    """The structured body of a tool result (also in its text)."""
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def env_ok() -> bool:
    return os.environ.get("VIBESYNC_BIN") is not None
