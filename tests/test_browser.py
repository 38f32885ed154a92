"""The report in a real browser: headless Chromium renders it, takes a screenshot, and the DevTools
protocol lists every request the page makes. A control page with a remote image proves the listing
works, so an empty list means the report made no network request.

Why the DevTools protocol and not a recording proxy: Chromium's own background traffic (component
updates, account checks) reaches any proxy even with every --disable flag; the protocol attributes
each request to the page that made it. No websocket package is installed, so a small client is below.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from cyphercat.data.builtin import digits
from cyphercat.reports import write_all
from test_reports import fabricate

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not any(shutil.which(n) for n in ("chromium", "chromium-browser")),
        reason="chromium is not installed (apt-get install -y chromium)",
    ),
]


class DevTools:
    """Just enough of RFC 6455 and the Chrome DevTools Protocol: masked text frames out, frames in."""

    def __init__(self, ws_url: str, timeout: float = 60):
        u = urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.rfile = self.sock.makefile("rb")
        status = self.rfile.readline()
        assert b" 101 " in status, status
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.next_id = 0
        self.events: list[dict] = []

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _recv(self) -> dict:
        parts = []
        while True:
            b0, b1 = self.rfile.read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            payload = self.rfile.read(n)
            op = b0 & 0x0F
            if op == 0x8:
                raise ConnectionError("browser closed the DevTools connection")
            if op in (0x9, 0xA):  # ping/pong: Chromium does not ping an idle client within a test
                continue
            parts.append(payload)
            if b0 & 0x80:
                return json.loads(b"".join(parts))

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self._send(json.dumps(msg))
        while True:
            reply = self._recv()
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < end:
            if any(e.get("method") == method and e.get("sessionId") == session for e in self.events[seen:]):
                return
            self.events.append(self._recv())
        raise TimeoutError(method)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + 60
    while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
        if time.monotonic() > end or proc.poll() is not None:
            proc.kill()
            pytest.fail("chromium did not open its DevTools port")
        time.sleep(0.1)
    port, path = port_file.read_text().splitlines()[:2]
    dt = DevTools(f"ws://127.0.0.1:{port}{path}")
    yield dt
    dt.sock.close()
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def open_page(dt: DevTools, page: Path, width: int = 1280, height: int = 2400) -> tuple[str, bytes, list[str]]:
    """Load ``page`` in a fresh tab; return its DOM, a PNG screenshot and the URLs it requested."""
    target = dt.call("Target.createTarget", url="about:blank")["targetId"]
    session = dt.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for method in ("Network.enable", "Page.enable"):
        dt.call(method, session)
    dt.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
            mobile=False)
    first = len(dt.events)
    dt.call("Page.navigate", session, url=page.as_uri())
    dt.wait_for("Page.loadEventFired", session)
    dom = dt.call("Runtime.evaluate", session, expression="document.documentElement.outerHTML",
                  returnByValue=True)["result"]["value"]
    png = base64.b64decode(dt.call("Page.captureScreenshot", session, format="png")["data"])
    urls = [e["params"]["request"]["url"] for e in dt.events[first:]
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == session]
    dt.call("Target.closeTarget", targetId=target)
    return dom, png, urls


def network(urls: list[str]) -> list[str]:
    """Requests that leave the machine: everything but the page's own file and inline data: URIs."""
    return [u for u in urls if urlparse(u).scheme not in ("file", "data")]


def test_report_renders_offline_in_chromium(tmp_path, browser):
    results, scores = fabricate()
    write_all(tmp_path, results, scores, digits())
    report = tmp_path / "report.html"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", report.read_text(), re.I)

    dom, png, urls = open_page(browser, report)
    assert re.search(r"An attacker identifies \d+\.\d% of training records with 1% false alarms", dom)
    assert re.search(r'<figure class="roc"><img src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', dom)
    table = re.search(r'<table class="attacks">.*?</table>', dom, re.S)
    assert table and all(a in table.group(0) for a in ("lira_online", "loss", "confidence", "TPR at 1% FPR"))
    assert urls and urls[0] == report.as_uri()  # the listing does see the page's own load
    assert network(urls) == [], f"the report made network requests: {network(urls)}"

    import matplotlib.pyplot as plt

    img = plt.imread(io.BytesIO(png))
    assert img.shape[:2] == (2400, 1280) and float(np.std(img)) > 0.05  # a rendered page, not a blank one
    if os.environ.get("CYPHERCAT_BROWSER_ARTIFACTS"):
        Path(os.environ["CYPHERCAT_BROWSER_ARTIFACTS"], "report-screenshot.png").write_bytes(png)

    # Control: a page that loads a remote image shows up in the same listing.
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://example.invalid/pixel.png">control</body></html>')
    _, _, control_urls = open_page(browser, control, height=200)
    assert "http://example.invalid/pixel.png" in network(control_urls)


def test_script_in_dataset_name_stays_text_in_the_browser(tmp_path, browser):
    evil = "<script>document.title='pwned'</script>"
    results, scores = fabricate(dataset_name=evil, defenses=False)
    write_all(tmp_path, results, scores)
    dom, _, urls = open_page(browser, tmp_path / "report.html", height=800)
    assert re.search(r"<title>(.*?)</title>", dom, re.S).group(1).startswith("Privacy audit: ")
    assert "&lt;script&gt;document.title" in dom
    assert "<script" not in dom.lower()
    assert network(urls) == []
