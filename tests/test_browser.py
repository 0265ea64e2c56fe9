"""The report page in a real browser: headless Chromium loads report.html from disk, every figure decodes at twice
its displayed size (HiDPI), the header states the threat model and the claims summary, every section shows its
verdicts, a broken model's claims are never "holds" and its failed sections name the cause, no number on the page is
NaN or inf, the console stays clean, and the screenshot is not blank.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, JSON
messages separated by NUL bytes), so no network port and no extra package are needed. Debian's ``chromium`` is
installed by the ``chromium`` fixture when missing (``apt-get``, as root, which is how CI runs).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from report_helpers import Constant, tiny_plan, train_tiny

from robustlens.data import load_dataset
from robustlens.report import ModelEntry, ReportData, run_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-extensions", "--disable-sync",
                  "--remote-debugging-pipe", "--window-size=1280,1800"]


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium binary, installing Debian's ``chromium`` package when none is found."""
    path = _find_chromium()
    if path is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "chromium"]
        if os.geteuid() != 0 and shutil.which("sudo"):
            cmd = ["sudo", "-n", *cmd]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:  # a fresh machine may need the package lists first
            subprocess.run([*cmd[:-4], "apt-get", "update", "-q"], env=env, capture_output=True, text=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        path = _find_chromium()
        assert path is not None, (
            "Chromium is needed by the browser test and could not be installed "
            f"({' '.join(cmd)} exited {done.returncode}: {done.stderr[-500:]}); install it with "
            "'apt-get install -y chromium' and run the tests again"
        )
    return path


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._next_id, timeout)
        assert "error" not in reply, f"{method} failed: {reply['error']}"
        return reply.get("result", {})

    def wait(self, pred: Any, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                if pred(msg):
                    return msg
            assert time.monotonic() < deadline, "Chromium did not answer in time"
            chunk = os.read(self._from_chrome_r, 1 << 16)
            assert chunk, f"Chromium exited: {self.proc.stderr.read().decode()[-800:] if self.proc.stderr else ''}"
            self._buf += chunk

    def close(self) -> None:
        try:
            os.write(self._to_chrome_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_chrome_w)
            os.close(self._from_chrome_r)


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and error log entries (failed loads) among the DevTools events."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    return out


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A comparison report with every section (the quick plan at the demo's tiny sizes) on two tiny CNNs trained for
    a few steps on embedded MNIST images (roles standard and robust) and a constant classifier (a broken model)."""
    out = tmp_path_factory.mktemp("report")
    train = load_dataset("mnist-embedded", split="train")
    test = load_dataset("mnist-embedded", split="test")
    models = [ModelEntry(f"tiny-{s}", test.classifier(train_tiny(s, train.x, train.y)), source=f"TinyCNN seed {s}",
                         role=role) for s, role in ((0, "standard"), (1, "robust"))]
    models.append(ModelEntry("constant", test.classifier(Constant()), source="zero weights"))
    with pytest.warns(UserWarning, match="failed"):
        run_report(models, ReportData.from_image_data(test), tiny_plan(test.input_shape), out, seed=0,
                   progress=False)
    return out


PAGE_STATE = """JSON.stringify({
  title: document.title,
  sections: document.querySelectorAll('section').length,
  images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight,
                                                  Number(i.getAttribute('width')), i.clientWidth]),
  threat: (document.querySelector('p.threat') || {}).textContent || '',
  summary: (document.querySelector('table.claims caption') || {}).textContent || '',
  claimRows: Array.from(document.querySelectorAll('table.claims tbody tr')).map(r => [r.cells[2].textContent,
      r.querySelector('.badge').textContent]),
  headline: Array.from(document.querySelectorAll('table.headline tbody tr td:first-child')).map(c => c.textContent),
  verdictsPerSection: Array.from(document.querySelectorAll('section')).map(s => [s.id,
      s.querySelectorAll('ul.verdicts li .badge').length]),
  failures: Array.from(document.querySelectorAll('ul.sentences .error')).map(e => [e.textContent,
      e.parentElement.querySelectorAll('details').length]),
  text: document.body.innerText,
})"""


def test_report_page_renders_in_headless_chromium(chromium: str, report_dir: Path, tmp_path: Path) -> None:
    page = report_dir / "report.html"
    n_img = page.read_text().count("<img ")
    assert n_img >= 15  # real figures: every computed section draws at least one
    browser = DevTools(chromium, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)
        state = browser.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True}, session=session)
        info = json.loads(state["result"]["value"])
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                            session=session)
        time.sleep(0.2)  # let late console events arrive before reading them
        browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
    finally:
        browser.close()

    assert info["title"].startswith("robustlens report")
    assert info["sections"] >= 11
    assert len(info["images"]) == n_img
    broken = [i for i, (complete, w, h, *_) in enumerate(info["images"]) if not (complete and w > 0 and h > 0)]
    assert not broken, f"images {broken} did not load"
    assert _problems(browser.events) == []
    # HiDPI: every figure carries twice the pixels it is shown with
    blurry = [i for i, (_, w, _, shown, client) in enumerate(info["images"]) if not (w >= 1.9 * shown >= client > 0)]
    assert not blurry, [info["images"][i] for i in blurry]
    # the header states the threat model; the claims table one verdict per claim and the "k of n" summary
    assert "Linf eps 0.1" in info["threat"] and "L2 eps 2" in info["threat"] and "sigma 0.25" in info["threat"]
    assert re.fullmatch(r"\d+ of \d+ claims hold( \(.*\))?", info["summary"]), info["summary"]
    assert any("Linf eps 0.1" in label for label in info["headline"])
    assert info["claimRows"] and all(badge in ("holds", "does not hold", "cannot be judged", "not tested")
                                     for _, badge in info["claimRows"])
    # every section states at least one verdict; the broken model's claims are never "holds"
    assert all(n > 0 for _, n in info["verdictsPerSection"]), info["verdictsPerSection"]
    constant = [badge for subject, badge in info["claimRows"] if "constant" in subject]
    assert constant and set(constant) == {"cannot be judged"}, constant
    assert any("the classifier is constant on these inputs" in text and details for text, details in info["failures"])
    assert not re.search(r"(?<![A-Za-z])(nan|inf)(?![A-Za-z])", info["text"], re.IGNORECASE)

    png = tmp_path / "screenshot.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    pixels = mpimg.imread(png)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1000
    gray = np.asarray(pixels[..., :3], dtype=np.float64).mean(2)
    assert gray.std() > 0.02, "the screenshot is blank"
    assert (gray < 0.5).mean() > 0.002, "the screenshot shows no dark text or lines"
    assert torch.tensor(gray).unique().numel() > 10
