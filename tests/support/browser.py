"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``): stdlib only.

Chromium reads commands on fd 3 and writes replies on fd 4, each a JSON message ended by a NUL byte. A test
opens a page and evaluates JavaScript in it, awaiting promises, so it waits for real events (a video's seek)
instead of guessing a time budget.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the closed network refuses Chromium's own connections
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-pipe",
)


class Browser:
    """One headless Chromium with one tab: ``open(path)``, then ``evaluate(js)`` -> the value, JSON-converted."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed")
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child, before exec: the pipe ends Chromium expects
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)  # dup first: a pipe end may already be fd 3 or 4
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=on_fds_3_and_4,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def open(self, path: Path) -> None:
        """Load a local page and wait for its load event."""
        self._send("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        self.evaluate("new Promise(r => document.readyState === 'complete' ? r() : addEventListener('load', r))")

    def evaluate(self, expression: str) -> Any:
        reply = self._send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}, session=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"JavaScript error: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def set_viewport(self, width: int, height: int) -> None:
        """The page's layout size in CSS pixels (the default headless window is 800 x 600)."""
        params = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self._send("Emulation.setDeviceMetricsOverride", params, session=True)

    def click(self, x: float, y: float) -> None:
        """A real left click (press and release) at page coordinates, as a person's mouse would make it."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            self._send("Input.dispatchMouseEvent", params, session=True)

    def hover(self, x: float, y: float) -> None:
        self._send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y}, session=True)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """A PNG of the page (the whole scrollable page when ``full_page``)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self._send("Page.captureScreenshot", params, session=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, params: dict, session: bool = False) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:  # replies come in order with events between them; skip the events
            reply = json.loads(self._read_message())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read_message(self) -> bytes:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], self.timeout)
            if not ready:
                raise TimeoutError(f"Chromium did not answer within {self.timeout} s")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return message
