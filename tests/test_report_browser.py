"""report.html in a real browser: headless Chromium decodes every embedded image with no errors, and
the checkpoint explorer follows its slider and the arrow keys.

Chromium comes from Debian's packages: `make test` installs it first (tests/install_chromium.sh, root
and apt-get needed, about a minute). Where it is missing, the tests are skipped with one line saying
how to install it; no test installs anything.

The tests render a copy of the report with small scripts added: one at the top of <head> that records
console.error calls, uncaught errors and failed resource loads, and one that, after the page's own
script has run, does the checking (decodes every <img> by drawing it on a canvas and reading its pixels
back; or moves the explorer's slider and presses arrow keys, reading what the page then shows) and
writes the outcome as JSON into <pre id="browser-check">, which `chromium --dump-dom` then prints.
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffrep.config import make_config
from diffrep.report import write_report
from diffrep.rundir import RunDir
from diffrep.run import train

INSTALL_HINT = "install it with `sudo apt-get install chromium` (Debian/Ubuntu) or run tests/install_chromium.sh as root"

# As root in a container: no sandbox, no GPU, nothing from the network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]

CAPTURE_SCRIPT = """<script>
window.__errors = [];
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  window.addEventListener("error", function (ev) {
    var t = ev.target;
    if (t && t !== window && t.tagName) {
      window.__errors.push("failed to load <" + t.tagName.toLowerCase() + "> " + (t.alt || ""));
    } else {
      window.__errors.push("uncaught error: " + ev.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (ev) {
    window.__errors.push("unhandled rejection: " + ev.reason);
  });
})();
</script>"""

RESULT_SCRIPT = """<script>
window.addEventListener("load", function () {
  // Synchronous on purpose: --dump-dom does not wait for off-thread work such as img.decode().
  // drawImage + getImageData decode each image fully on this thread; a broken one throws or stays blank.
  var images = Array.prototype.slice.call(document.images).map(function (im) {
    var r = {alt: im.alt, complete: im.complete, width: im.naturalWidth, height: im.naturalHeight,
             painted: 0, error: null};
    try {
      var canvas = document.createElement("canvas");
      canvas.width = im.naturalWidth;
      canvas.height = im.naturalHeight;
      var ctx = canvas.getContext("2d");
      ctx.drawImage(im, 0, 0);
      var px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (var i = 3; i < px.length; i += 4) if (px[i] > 0) r.painted++;  // pixels with any opacity
    } catch (e) {
      r.error = e.name + ": " + e.message;
    }
    return r;
  });
  var failures = images.filter(function (r) { return !(r.complete && r.width > 0 && r.painted > 0) || r.error; });
  var pre = document.createElement("pre");
  pre.id = "browser-check";
  pre.textContent = JSON.stringify({images: images, decoded: images.length - failures.length,
                                    failures: failures, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""

RESULT_RE = re.compile(r'<pre id="browser-check">(.*?)</pre>', re.S)
DATA_PNG_RE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _run_chromium(chromium: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run chromium in its own process group, so that a hang kills the browser's children as well."""
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s: {args}\nstderr tail:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a working Chromium, else the test is skipped with how to install it."""
    found = _find_chromium()
    if found is None:
        pytest.skip(f"no `chromium` at /usr/bin/chromium or on PATH; {INSTALL_HINT} (make test runs the script)")
    version = _run_chromium(found, ["--version"], timeout=30)
    if version.returncode != 0:
        pytest.skip(f"{found} does not start (`--version` exited {version.returncode}): {version.stderr[-800:]}")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of a seconds-long tiny run, UMAP on so that the UMAP panel is drawn too."""
    cfg = make_config("tiny", {"training.steps": 10, "probe.umap": True, "probe.grid": 6, "probe.knn": 5,
                               "probe.umap_neighbors": 5})
    path = tmp_path_factory.mktemp("browser") / "run"
    run = train(cfg, RunDir.create(path, cfg), quiet=True)
    report_path, _ = write_report(run)
    return report_path


def _instrument(html: str, check: str = RESULT_SCRIPT) -> str:
    head, sep, rest = html.partition("<head>")
    assert sep, "report.html has no <head>"
    html = head + sep + CAPTURE_SCRIPT + rest
    before, sep, after = html.rpartition("</body>")
    assert sep, "report.html has no </body>"
    return before + check + sep + after


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _expected(b64: str) -> dict:
    """What a full decode of one embedded PNG gives outside the browser: its size and how many of its
    pixels have any opacity (Pillow, which matplotlib already depends on)."""
    data = base64.b64decode(b64)
    width, height = _png_size(data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            painted = int((np.asarray(im.convert("RGBA"))[..., 3] > 0).sum())
    except Exception as e:  # a corrupted PNG: only the browser's view counts then
        painted = f"Pillow cannot decode it: {e}"
    return {"width": width, "height": height, "painted": painted}


def _check_in_browser(chromium: str, html: str, folder: Path, check: str = RESULT_SCRIPT) -> tuple[dict, list[str]]:
    """Render a copy of `html` instrumented with the `check` script; returns the check's result and the
    console lines that Chromium logged (neither the page nor the added scripts log anything, so any is
    unexpected)."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "report.html"
    page.write_text(_instrument(html, check), encoding="utf-8")
    done = _run_chromium(chromium, [f"--user-data-dir={folder / 'profile'}", "--dump-dom",
                                    "--virtual-time-budget=10000", page.as_uri()])
    assert done.returncode == 0, f"chromium exited {done.returncode}; stderr tail:\n{done.stderr[-3000:]}"
    match = RESULT_RE.search(done.stdout)
    assert match, ("the page wrote no result (its scripts did not run to the end); stderr tail:\n"
                   + done.stderr[-3000:])
    result = json.loads(html_lib.unescape(match[1]))
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return result, console


def _problems(chromium: str, html: str, folder: Path) -> tuple[int, list[str]]:
    """Everything wrong with `html` in Chromium: images not decoded, decoded differently from Pillow
    (a partial decode leaves pixels blank), errors in the page, console messages. Returns (number of
    <img> in the page, problems)."""
    embedded = DATA_PNG_RE.findall(html)
    result, console = _check_in_browser(chromium, html, folder)
    images, problems = result["images"], []
    if len(images) != len(embedded):
        problems.append(f"{len(images)} <img> in the page, {len(embedded)} data:image/png in the report")
    for failure in result["failures"]:
        problems.append(f"not decoded: {failure}")
    for im, b64 in zip(images, embedded):
        want = _expected(b64)
        got = {k: im[k] for k in want}
        if got != want:
            problems.append(f"<img alt={im['alt']!r}> decoded as {got}, the PNG itself is {want}")
    problems += [f"error in the page: {e}" for e in result["errors"]]
    problems += [f"console: {line}" for line in console]
    return len(images), problems


def test_report_renders_every_image_in_chromium(chromium, report, tmp_path):
    html = report.read_text(encoding="utf-8")
    n_embedded = len(DATA_PNG_RE.findall(html))
    n_explorer = len(re.findall(r'"samples":"data:image/png;base64,', html))  # drawn by the explorer (test below)
    assert html.count("data:image/png") == n_embedded + n_explorer and n_embedded >= 3 and n_explorer >= 3

    n_images, problems = _problems(chromium, html, tmp_path / "dom")
    assert problems == [], "report.html in Chromium:\n" + "\n".join(problems)
    assert n_images == n_embedded

    screenshot = tmp_path / "report.png"
    done = _run_chromium(chromium, [f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={screenshot}",
                                    "--window-size=1200,3000", "--virtual-time-budget=10000", report.as_uri()])
    assert done.returncode == 0, f"chromium exited {done.returncode}; stderr tail:\n{done.stderr[-3000:]}"
    assert screenshot.is_file(), f"no screenshot written; stderr tail:\n{done.stderr[-3000:]}"
    assert _png_size(screenshot.read_bytes()) == (1200, 3000)
    assert screenshot.stat().st_size > 50_000, f"screenshot suspiciously small: {screenshot.stat().st_size} bytes"
    print(f"\n{n_images} of {n_embedded} images decoded in Chromium, no errors; screenshot: {screenshot}")


def test_browser_check_catches_broken_images(chromium, report, tmp_path):
    """The check itself: a truncated image (the browser reports it broken) and one with damaged pixel
    data (the browser draws part of it without any error) must both be caught."""
    html = report.read_text(encoding="utf-8")
    b64 = DATA_PNG_RE.search(html)[1]
    truncated = html.replace(b64, b64[:40], 1)  # the PNG signature and part of its header
    data = bytearray(base64.b64decode(b64))
    middle = len(data) // 2
    data[middle:middle + 200] = bytes(200)
    damaged = html.replace(b64, base64.b64encode(bytes(data)).decode(), 1)
    for name, page in [("truncated", truncated), ("damaged", damaged)]:
        _, problems = _problems(chromium, page, tmp_path / name)
        assert problems, f"the {name} image passed the browser check"


EXPLORER_SCRIPT = """<script>
window.addEventListener("load", function () {
  // What the explorer shows now: its checkpoint, the checkpoint whose samples are drawn, the label,
  // the cursor's x on the curves, and a digest of the samples and PCA canvases' pixels.
  function digest(id) {
    var c = document.getElementById(id), copy = document.createElement("canvas"), h = 0;
    copy.width = c.width;
    copy.height = c.height;
    var ctx = copy.getContext("2d", {willReadFrequently: true});  // a copy read once: no readback warning
    ctx.drawImage(c, 0, 0);
    var px = ctx.getImageData(0, 0, c.width, c.height).data;
    for (var i = 0; i < px.length; i++) h = (h * 31 + px[i]) % 1000000007;
    return h;
  }
  function state() {
    var root = document.getElementById("explorer"), cursors = document.querySelectorAll(".explorer-cursor");
    return {step: root.dataset.step, samplesStep: root.dataset.samplesStep,
            label: document.getElementById("explorer-label").textContent,
            slider: document.getElementById("explorer-slider").value,
            cursorX: Array.prototype.map.call(cursors, function (c) { return Number(c.getAttribute("x1")); }),
            cursorStep: Array.prototype.map.call(cursors, function (c) { return c.getAttribute("data-step"); }),
            samples: digest("explorer-samples"), pca: digest("explorer-pca-x")};
  }
  var slider = document.getElementById("explorer-slider"), states = [];
  var actions = [
    function () {},
    function () { slider.value = "0"; slider.dispatchEvent(new Event("input", {bubbles: true})); },
    function () { document.body.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight", bubbles: true})); },
    function () { document.body.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowLeft", bubbles: true})); }
  ];
  function next(k) {  // each action, then time for the samples' image to decode and be drawn
    if (k === actions.length) {
      var pre = document.createElement("pre");
      pre.id = "browser-check";
      pre.textContent = JSON.stringify({states: states, steps: JSON.parse(
        document.getElementById("explorer-data").textContent).checkpoints.map(function (c) { return c.step; }),
        errors: window.__errors});
      document.body.appendChild(pre);
      return;
    }
    actions[k]();
    setTimeout(function () { states.push(state()); next(k + 1); }, 500);
  }
  next(0);
});
</script>"""


def test_the_explorer_follows_the_slider_and_the_arrow_keys(chromium, report, tmp_path):
    """Chromium opens the report, the check moves the slider to the first checkpoint and presses the right
    and left arrow keys: each time the shown checkpoint, its samples, the label and the cursor on every
    curve follow, and the pictures change with the checkpoint."""
    result, console = _check_in_browser(chromium, report.read_text(encoding="utf-8"), tmp_path, EXPLORER_SCRIPT)
    assert result["errors"] == [] and console == [], (result["errors"], console)
    steps = result["steps"]
    run = RunDir(report.parent)
    assert steps == run.checkpoint_steps() and len(steps) >= 3  # every checkpoint of the run, in order
    last, first, second, back = result["states"]
    for state, index in [(last, len(steps) - 1), (first, 0), (second, 1), (back, 0)]:
        step = str(steps[index])
        assert state["step"] == state["samplesStep"] == step, state
        assert state["slider"] == str(index)
        assert state["label"].startswith(f"step {step},"), state["label"]
        assert set(state["cursorStep"]) == {step} and len(state["cursorX"]) == 4, state
    assert first["cursorX"][0] < second["cursorX"][0] < last["cursorX"][0]
    assert back == first  # going back draws exactly what was drawn there before
    assert first["samples"] != last["samples"] and first["pca"] != last["pca"]
