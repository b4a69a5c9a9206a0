"""Open a local HTML file in headless Chromium and report what a reader would see.

Drives Debian's ``chromium`` over the DevTools protocol (websocket-client): loads the page with the
network switched off, waits until it has rendered, and returns the visible text, console errors,
uncaught exceptions and every request the page made. ``require_chromium`` fails in CI (env ``CI``
set) when the browser is missing, and skips with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-allow-origins=*",
    "--window-size=1280,1600",
]


def chromium_binary() -> str | None:
    """Path of chromium (Debian package) or a compatible browser, or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The browser path; fails in CI when missing, skips with the reason elsewhere."""
    path = chromium_binary()
    if path is None:
        msg = "chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI must run the browser tests")
        pytest.skip(f"{msg}; not in CI (env CI unset)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        msg = "websocket-client is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@dataclass
class PageReport:
    """What the browser saw: visible text, console errors, exceptions, requests."""

    text: str
    console: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    visible: dict[str, bool] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        """Console messages of level error/assert and uncaught exceptions."""
        bad = [m for lvl, m in self.console if lvl in ("error", "assert")]
        return bad + self.exceptions


class _CDP:
    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while time.monotonic() < end:
            self.ws.settimeout(max(0.1, end - time.monotonic()))
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return
        raise TimeoutError(f"no {method} within {timeout}s")

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        import websocket

        while time.monotonic() < end:
            self.ws.settimeout(max(0.05, end - time.monotonic()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break

    def close(self) -> None:
        self.ws.close()


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited early with status {proc.returncode}")
        if port_file.exists():
            lines = port_file.read_text().split()
            if lines:
                return int(lines[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


def _stop_session(proc: subprocess.Popen) -> None:
    """Terminate Chromium and every helper process of its session; wait until they are gone."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        end = time.monotonic() + wait_s  # helpers outlive the browser by a moment
        while time.monotonic() < end:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def open_page(
    path: str | Path,
    *,
    expect_visible: tuple[str, ...] = (),
    settle_s: float = 1.0,
    screenshot: str | Path | None = None,
) -> PageReport:
    """Load ``path`` in headless Chromium (offline) and return what it showed.

    Args:
        path: local HTML file.
        expect_visible: texts to look for as rendered, on-screen elements (``visible[text]``).
        settle_s: extra time after the load event for scripts to render.
        screenshot: write a PNG of the page here.
    """
    binary = require_chromium()
    url = Path(path).resolve().as_uri()
    # Chromium's helper processes (zygote, crashpad, GPU) can still write into the profile after
    # the browser exits: they run in their own session, which is killed as a whole below, and the
    # profile's removal tolerates a late write (CI once failed on "Directory not empty").
    with tempfile.TemporaryDirectory(prefix="tlt-chromium-", ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        proc = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port = _devtools_port(profile, proc)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t.get("type") == "page")
            cdp = _CDP(page["webSocketDebuggerUrl"])
            try:
                for domain in ("Runtime", "Log", "Page", "Network"):
                    cdp.call(f"{domain}.enable")
                cdp.call(
                    "Network.emulateNetworkConditions",
                    offline=True,
                    latency=0,
                    downloadThroughput=-1,
                    uploadThroughput=-1,
                )
                cdp.call("Page.navigate", url=url)
                cdp.wait_for("Page.loadEventFired", timeout=60)
                cdp.drain(settle_s)
                text = cdp.call(
                    "Runtime.evaluate", expression="document.body.innerText", returnByValue=True
                )["result"].get("value", "")
                visible = {}
                for needle in expect_visible:
                    expr = _VISIBLE_JS % json.dumps(needle)
                    res = cdp.call("Runtime.evaluate", expression=expr, returnByValue=True)
                    visible[needle] = bool(res["result"].get("value"))
                if screenshot is not None:
                    import base64

                    shot = cdp.call(
                        "Page.captureScreenshot", format="png", captureBeyondViewport=True
                    )
                    Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
                cdp.drain(0.2)
                report = PageReport(text=text, visible=visible)
                for ev in cdp.events:
                    m, p = ev.get("method"), ev.get("params", {})
                    if m == "Runtime.consoleAPICalled":
                        args = " ".join(
                            str(a.get("value", a.get("description", ""))) for a in p["args"]
                        )
                        report.console.append((p["type"], args))
                    elif m == "Log.entryAdded":
                        e = p["entry"]
                        report.console.append((e["level"], e.get("text", "")))
                    elif m == "Runtime.exceptionThrown":
                        d = p["exceptionDetails"]
                        desc = d.get("exception", {}).get("description") or d.get("text", "")
                        report.exceptions.append(desc)
                    elif m == "Network.requestWillBeSent":
                        report.requests.append(p["request"]["url"])
                return report
            finally:
                cdp.close()
        finally:
            _stop_session(proc)


# true when an element whose own text contains the needle is laid out with a non-empty box
_VISIBLE_JS = """(() => {
  const needle = %s;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.replace(/\\u00a0/g, ' ').includes(needle)) continue;
    const el = node.parentElement;
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    if (r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
        && parseFloat(s.opacity) > 0) return true;
  }
  return false;
})()"""
