"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``, which .ci/run installs)
driven over the DevTools protocol on a pipe. For a tiny run of each modality and for a comparison of
two runs: the page renders (a screenshot that is not blank), makes no network request (every request
the browser sees is file: or data:), its images decode, its audio players load their clips (duration
> 0), and each point-cloud viewer draws and turns when the mouse drags across it."""
from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multidiff.engine import trainer
from multidiff.engine.config import load_recipe
from multidiff.report import write_report

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (.ci/run installs Debian's chromium; "
                                                        "apt-get install chromium)")

COMMON = ["train.batch_size=8", "train.log_every=1", "train.ckpt_every=1000", "sample.steps=2"]
RUNS = {
    "toy2d": ["model.hidden=16", "model.depth=1", "model.time_dim=8", "data.n_train=256", "data.n_test=256",
              "train.steps=12", "train.sample_every=6", "train.eval_every=6", "train.eval_n=64",
              "train.best_metric=frechet", "sample.n=64"],
    "shapes": ["model.channels=16", "model.num_res_blocks=1", "data.n_train=32", "data.n_test=8", "train.steps=3",
               "sample.n=4"],
    "tones": ["model.channels=16", "data.num_train=16", "data.num_test=8", "encoder.griffin_lim_iters=2",
              "train.steps=3", "sample.n=4"],
    "primitives": ["data.n_points=64", "data.train_per_class=2", "data.test_per_class=2", "model.width=16",
                   "model.depth=1", "model.heads=2", "train.steps=3", "sample.n=5"],
}
CHECKS = """(async () => {
  const audios = [...document.querySelectorAll("audio")];
  await Promise.all(audios.map(a => a.readyState >= 1 ? null : new Promise(done => {
    a.addEventListener("loadedmetadata", done, {once: true});
    a.addEventListener("error", done, {once: true});
    setTimeout(done, 10000);
  })));
  const images = [...document.images];
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  return {
    durations: audios.map(a => a.duration),
    images: images.map(i => [i.getAttribute("src"), i.naturalWidth]),
    clouds: [...document.querySelectorAll("canvas.cloud")].map(c => painted(c)),
    runs: [...document.querySelectorAll(".runs")].map(r => r.children.length),
  };
})()"""
PAINTED = """function painted(c) {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) { n++; sum += d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7 + i; }
  return [n, sum];
}"""


class DevTools:
    """Chromium driven over --remote-debugging-pipe: messages are JSON, each ended by a NUL byte, the
    browser reading them on its file descriptor 3 and writing on 4."""

    def __init__(self, executable: str, profile: Path):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def plumb():
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--mute-audio",
             "--no-first-run", "--hide-scrollbars", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-default-apps", "--disable-sync", f"--user-data-dir={profile}",
             "about:blank"],
            preexec_fn=plumb, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 60) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            event = self._read(timeout)
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._from_browser, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("no answer from Chromium")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str, width: int = 1400, height: int = 1000) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)


class Page:
    def __init__(self, browser: DevTools, session: str):
        self.browser, self.session = browser, session

    def evaluate(self, expression: str):
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                         "returnByValue": True}, self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def screenshot(self) -> Image.Image:
        data = self.browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 self.session)["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def drag(self, x: float, y: float, dx: float) -> None:
        for kind, px in (("mousePressed", x), ("mouseMoved", x + dx / 2), ("mouseMoved", x + dx), ("mouseReleased", x + dx)):
            self.browser.call("Input.dispatchMouseEvent", {"type": kind, "x": px, "y": y, "button": "left",
                                                           "buttons": 0 if kind == "mouseReleased" else 1,
                                                           "clickCount": 1}, self.session)

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    os.environ.setdefault("MULTIDIFF_CACHE", str(root / "cache"))
    runs = {}
    for recipe, settings in RUNS.items():
        cfg = load_recipe(recipe, "quick", [*COMMON, *settings])
        runs[recipe] = trainer.train(cfg, root / recipe, device="cpu")
    pages = {name: write_report([run]) for name, run in runs.items()}
    pages["comparison"] = write_report([runs["shapes"], runs["primitives"]], root / "comparison")
    return pages


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    devtools = DevTools(BROWSER, tmp_path_factory.mktemp("chromium-profile"))
    yield devtools
    devtools.close()


def _checked_page(browser, index: Path) -> tuple[Page, dict]:
    page = browser.open(index.as_uri())
    page.evaluate(PAINTED.replace("function painted", "window.painted = function"))
    return page, page.evaluate(CHECKS)


def _assert_offline_and_rendered(page: Page, result: dict, index: Path) -> None:
    urls = page.requested_urls()
    assert urls and urls[0] == index.as_uri()
    remote = [u for u in urls if not u.startswith(("file:", "data:"))]
    assert not remote, f"network requests: {remote}"
    pixels = np.asarray(page.screenshot().convert("L"))
    assert (pixels < 240).mean() > 0.02, "the screenshot is (nearly) blank"
    broken = [src for src, width in result["images"] if not width]
    assert result["images"] and not broken, f"images that did not load: {broken}"
    html = index.read_text()
    assert "http://" not in html and "https://" not in html   # no absolute link at all, not only none used


def test_the_browser_sees_network_requests(browser):
    """The check of the reports' pages can fail: a page that fetches from a server is caught."""
    page = browser.open('data:text/html,<img src="http://127.0.0.1:9/x.png"><p>hello</p>')
    assert "http://127.0.0.1:9/x.png" in page.requested_urls()


@pytest.mark.parametrize("name", ["toy2d", "shapes", "tones", "primitives"])
def test_each_modality_report_renders_offline(reports, browser, name):
    page, result = _checked_page(browser, reports[name])
    _assert_offline_and_rendered(page, result, reports[name])
    html = reports[name].read_text()
    if name == "toy2d":  # evaluation during training: a chart per metric and the best checkpoint
        assert 'aria-label="frechet"' in html and "best checkpoint</td><td>step " in html
    if name == "shapes":
        assert sum(src.endswith(".png") and "/samples/" in src for src, _ in result["images"]) == 4
    if name == "tones":
        assert len(result["durations"]) == 4
        assert all(d == pytest.approx(4096 / 8000, rel=0.01) for d in result["durations"]), result["durations"]
    else:
        assert not result["durations"]
    if name == "primitives":
        assert len(result["clouds"]) == 5
        assert all(n > 100 for n, _ in result["clouds"]), result["clouds"]   # points drawn on the canvas
        box = page.evaluate("(() => { const r = document.querySelector('canvas.cloud').getBoundingClientRect();"
                            " window.scrollTo(0, r.top + window.scrollY - 100);"
                            " const s = document.querySelector('canvas.cloud').getBoundingClientRect();"
                            " return [s.left + s.width / 2, s.top + s.height / 2]; })()")
        page.drag(box[0] - 40, box[1], 80)
        turned = page.evaluate("painted(document.querySelector('canvas.cloud'))")
        assert turned[1] != result["clouds"][0][1], "dragging did not turn the cloud"
    else:
        assert not result["clouds"]


def test_comparison_page_shows_two_runs_side_by_side(reports, browser):
    index = reports["comparison"]
    page, result = _checked_page(browser, index)
    _assert_offline_and_rendered(page, result, index)
    assert result["runs"] == [2, 2]                      # previews and samples: one column per run
    assert len(result["clouds"]) == 5 and all(n > 100 for n, _ in result["clouds"])
    html = index.read_text()
    assert "<code>modality</code>" in html               # the config keys that differ are listed
    assert ">shapes</span>" in html and ">primitives</span>" in html
