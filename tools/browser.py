"""A small headless-Chromium driver over the DevTools protocol, for the dashboard's end-to-end
test and the README screenshots: open a page, wait until a JavaScript condition holds (Streamlit
draws after load), read text, take a screenshot.

Uses the system Chromium (Debian's ``chromium``) and the ``websockets`` client; nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


class BrowserError(RuntimeError):
    """Chromium did not start, a DevTools call failed, or a wait timed out."""


class Chromium:
    """One headless Chromium with a fresh profile, driven through one page's DevTools websocket.

    >>> with Chromium() as browser:                                       # doctest: +SKIP
    ...     browser.open("http://127.0.0.1:8501")
    ...     browser.wait_for("document.body.innerText.includes('Runs')")
    """

    def __init__(self, executable: str = CHROMIUM, width: int = 1400, height: int = 1000, timeout: float = 30.0):
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="lab-chromium-"))
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._id = 0
        self._stack = ExitStack()
        try:
            port = self._devtools_port(timeout)
            target = self._page_target(port, timeout)
            # entered as a context manager: websockets >= 17 connects there (a bare connect() is deprecated)
            self.ws = self._stack.enter_context(connect(target, max_size=None, open_timeout=timeout))
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # -- start-up ---------------------------------------------------------------------------------

    def _devtools_port(self, timeout: float) -> int:
        """Chromium writes the port it chose to DevToolsActivePort in the profile."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with code {self.proc.returncode} before opening DevTools")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.05)
        raise BrowserError(f"chromium did not open DevTools within {timeout:.0f} s")

    @staticmethod
    def _page_target(port: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise BrowserError("chromium has no page target")

    # -- protocol -----------------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict:
        """Send one DevTools command and return its result (events arriving meanwhile are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        """Navigate to ``url`` (returns once navigation starts; use :meth:`wait_for` for content)."""
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25) -> Any:
        """Poll until a JavaScript expression is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError:  # the page may be between documents
                value = None
            if value:
                return value
            time.sleep(interval)
        raise BrowserError(f"timed out after {timeout:.0f} s waiting for {expression!r}; page text: "
                           f"{(self.text() or '')[:300]!r}")

    def text(self) -> str:
        """The page's visible text."""
        try:
            return self.evaluate("document.body ? document.body.innerText : ''") or ""
        except BrowserError:
            return ""

    def screenshot(self, path: str | Path) -> Path:
        """Save the viewport as PNG."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Stop Chromium and remove its profile."""
        self._stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
