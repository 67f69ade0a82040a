"""A real headless Chromium, driven over the DevTools protocol, for tests that need a browser.

`--dump-dom` (tests/test_dashboard.py) shows what a page drew; some checks need more: what a
page's script can read from a cross-origin answer (CORS), how wide each element is at a given
window size, a screenshot. This is a small DevTools client over the `websockets` package
(uvicorn's own dependency) instead of a browser-automation package that would download a
browser of its own: it drives Debian's `chromium`, started with the flags known to work on
a machine with no network (no background networking, no component updates, a fresh profile).

    async with Chromium.launch(tmp_path) as browser:
        page = await browser.new_page(width=390, height=844, mobile=True)
        await page.goto(url)
        title = await page.evaluate("document.title")
        png = await page.screenshot()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium) - the page is not rendered",
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",  # a screenshot's width is the page's, not the page's plus a bar
)


class BrowserError(RuntimeError):
    """A DevTools command failed, or a page's script threw."""


class Chromium:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, profile: Path) -> AsyncIterator[Chromium]:
        """Start Chromium with a fresh profile under `profile`; stop it (its whole process
        group) on the way out."""
        proc, log = _start(profile)
        try:
            ws = await connect(await _devtools_url(profile, proc), max_size=None)
            browser = cls(ws)
            try:
                yield browser
            finally:
                await browser.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """One DevTools command; its result, or `BrowserError`."""
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            future = self._waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def new_page(self, *, width: int, height: int, mobile: bool = False) -> Page:
        """A blank tab whose window is `width` x `height` CSS pixels (a phone's when
        `mobile`: the page's viewport meta tag applies, as on a phone)."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        return page

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.ws.close()


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def goto(self, url: str, within: float = 20.0) -> None:
        """Navigate and wait until the document has loaded."""
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", within)

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited), as JSON would give it."""
        reply = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"the page's script threw: {text}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, within: float = 20.0) -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"never true within {within} s: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> tuple[int, int]:
        """A PNG of the whole page (beyond the window when it is taller) written to `path`;
        its size in pixels, read back from the file."""
        shot = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return png_size(path)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _start(profile: Path) -> tuple[subprocess.Popen[bytes], BinaryIO]:
    assert CHROMIUM is not None
    profile.mkdir(parents=True, exist_ok=True)
    log = (profile / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


async def _devtools_url(profile: Path, proc: subprocess.Popen[bytes]) -> str:
    """The browser's DevTools websocket, from the file Chromium writes once it listens."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            port, path = active.read_text().splitlines()[:2]
            return f"ws://127.0.0.1:{int(port)}{path}"
        await asyncio.sleep(0.05)
    raise BrowserError("chromium did not open its DevTools port within 30 s")
