"""Notebook 01 and its mask painter in a real browser: JupyterLab + headless Chromium, driven by Selenium.

    python scripts/browser_test.py --out outputs/browser_test        # (make browser-test)

What it does, as a learner would:

1. starts JupyterLab from this interpreter on 127.0.0.1 (a free port, a random token) on a temporary copy of
   ``notebooks/`` with its own settings, runtime and workspace folders (nothing in the repository is written;
   autosave is off), and opens ``01_mask_exploration.ipynb`` in headless Chromium (1400x1000 window);
2. runs every cell (the "Run All Cells" command) and waits for the kernel to go idle, failing on any error output;
3. scrolls the mask painter into view and checks its layout: a fixed CSS size equal to the canvas' pixel size
   (long side <= 512), crisp pixels, tool labels that fit, the "tool" label on the row of its buttons;
4. clicks a tool button first (the focus leaves the canvas: this is what used to make the page jump on the next
   press), then paints a brush stroke and drags a box at known video pixels with real mouse input (Chrome DevTools
   ``Input.dispatchMouseEvent``), reads ``painter.mask`` back in the kernel and checks that the paint landed within
   one video pixel of the aim and that the page did not scroll;
5. checks that the canvas gives the keyboard back when the pointer leaves it, and that the status line says what
   the last action did;
5b. picks the "click +" tool and clicks once: the kernel must get the click at the video pixel aimed at (±1), on
   the frame shown, positive (the click tracks with SAM2 when its weights are there, else the flow stand-in);
6. checks that every ``<video>`` in the notebook reaches ``readyState >= 2`` (it has a frame to show);
7. for the record, not a check (``--no-partial-view`` skips it): presses on a canvas whose lower third is out of
   view, where the browser still scrolls the focused canvas into view (ipycanvas focuses it on every press), and
   logs by how much.

It prints one PASS/FAIL line per check, writes screenshots and ``result.json`` into ``--out`` and exits non-zero on
any failure. JupyterLab, its kernel, chromedriver and Chromium are stopped on every exit path.

Needs: jupyterlab, selenium (the ``dev`` extra) and Debian's ``chromium`` + ``chromium-driver`` (or ``--chrome`` /
``--chromedriver``). Set ``LORAEDIT_THREADS=1 OMP_NUM_THREADS=1`` on a busy machine (the default here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_mask_exploration.ipynb"
T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


class Failed(Exception):
    """A step that the following steps depend on did not work."""


class Timeout(Exception):
    pass


# ----------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return []


def kill_tree(pid: int | None, name: str, grace: float = 8.0) -> None:
    """SIGTERM a process, its process group (it was started in a new session) and its descendants; SIGKILL after
    ``grace`` seconds whatever is left."""
    if not pid:
        return
    pids = [pid, *_descendants(pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if _alive(p)]
    for p in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    log(f"stopped {name} (pid {pid}{', killed' if left else ''})")


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(Exception):
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return True


def start_lab(work: Path, port: int, token: str, log_path: Path) -> subprocess.Popen:
    """JupyterLab on 127.0.0.1 serving ``work/notebooks``, with every Jupyter folder inside ``work``."""
    settings = work / "lab-settings"
    for plugin, value in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},  # never write the notebook back
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTER_DATA_DIR=str(work / "data"), JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"), IPYTHONDIR=str(work / "ipython"),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env.setdefault("LORAEDIT_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work / 'notebooks'}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=", "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI runners
        cmd.append("--allow-root")
    out = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=work / "notebooks", env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"JupyterLab exited with code {proc.returncode} (see jupyterlab.log)")
        with contextlib.suppress(Exception), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise Failed(f"JupyterLab did not answer {url.split('?')[0]} within {timeout:.0f} s")


def shutdown_kernels(base: str, token: str) -> None:
    """Ask the server to stop its kernels (they run in their own sessions, outside the server's group)."""
    with contextlib.suppress(Exception):
        hdr = {"Authorization": f"token {token}"}
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/kernels", headers=hdr), timeout=5) as r:
            kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(f"{base}/api/kernels/{k['id']}", headers=hdr, method="DELETE")
            with contextlib.suppress(Exception), urllib.request.urlopen(req, timeout=10):
                pass


# ----------------------------------------------------------------------------------------------- the browser
def start_browser(chrome: str, chromedriver: str, window: str, log_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={window}",
              "--autoplay-policy=no-user-gesture-required", "--no-first-run", "--disable-extensions",
              "--force-device-scale-factor=1"):
        opts.add_argument(a)
    service = Service(executable_path=chromedriver, log_output=str(log_path),
                      popen_kw={"start_new_session": True})
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    return driver


def wait_for(fn, timeout: float, what: str, every: float = 0.25):
    """Poll ``fn()`` until it returns something truthy; raise :class:`Failed` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


JS_PANEL = """
const app = window.jupyterapp;
if (!app) return null;
let panel = null;  // the notebook panel in the main area (shell.currentWidget is null while <body> has the focus)
for (const w of app.shell.widgets('main')) if (w.sessionContext && w.content && w.content.model) { panel = w; break; }
if (!panel) return null;
"""

JS_STATE = JS_PANEL + """
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = panel.content.model.cells;
let code = 0, done = 0, errors = [];
for (let i = 0; i < cells.length; i++) {
  const c = cells.get(i);
  if (c.type !== 'code') continue;
  code += 1;
  if (c.executionCount !== null && c.executionCount !== undefined) done += 1;
  for (let j = 0; j < c.outputs.length; j++) {
    const o = c.outputs.get(j);
    if (o.type === 'error') errors.push({cell: i, ename: o.toJSON().ename, evalue: o.toJSON().evalue});
  }
}
return {ready: panel.context.isReady, kernel: kernel ? kernel.status : null, code, done, errors,
        path: panel.context.path};
"""

JS_EXECUTE = JS_PANEL.replace("return null;", "{ done('ERROR no notebook panel'); return; }", 2) + """
const kernel = panel.sessionContext.session.kernel;
const future = kernel.requestExecute({code: arguments[0], silent: false, store_history: false});
let out = '';
future.onIOPub = (msg) => {
  const t = msg.header.msg_type;
  if (t === 'stream') out += msg.content.text;
  else if (t === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
};
future.done.then(() => done(out), (e) => done('ERROR ' + e));
"""


class Page:
    def __init__(self, driver):
        self.d = driver

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def kernel(self, code: str) -> str:
        """Run ``code`` in the notebook's kernel (through the page's own kernel connection); its stdout."""
        out = self.d.execute_async_script("const done = arguments[arguments.length - 1];\n" + JS_EXECUTE, code)
        if out.startswith("ERROR"):
            raise Failed(f"kernel code failed: {out}")
        return out

    def kernel_json(self, code: str):
        return json.loads(self.kernel(code).strip().splitlines()[-1])

    def mouse(self, kind: str, x: float, y: float, pressed: bool = False) -> None:
        ev = {"type": kind, "x": float(x), "y": float(y), "modifiers": 0,
              "button": "left" if kind in ("mousePressed", "mouseReleased") or pressed else "none",
              "buttons": 1 if (pressed or kind == "mousePressed") and kind != "mouseReleased" else 0}
        if kind in ("mousePressed", "mouseReleased"):
            ev["clickCount"] = 1
        self.d.execute_cdp_cmd("Input.dispatchMouseEvent", ev)

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def drag(self, a: tuple[float, float], b: tuple[float, float], steps: int = 8, between=None) -> None:
        self.mouse("mouseMoved", *a)
        self.mouse("mousePressed", *a)
        if between:
            between("pressed")
        for k in range(1, steps + 1):
            self.mouse("mouseMoved", a[0] + (b[0] - a[0]) * k / steps, a[1] + (b[1] - a[1]) * k / steps, True)
            time.sleep(0.02)
        if between:
            between("dragged")
        self.mouse("mouseReleased", *b)


# the painter's DOM, found from its canvas (class set by MaskPainter)
JS_PAINTER = """
const canvas = document.querySelector('canvas.loraedit-painter-canvas');
if (!canvas) return null;
const out = canvas.closest('.jp-OutputArea-output') || canvas.parentElement;
let scroller = canvas.parentElement;
while (scroller && !(scroller.scrollHeight > scroller.clientHeight + 1 &&
       /(auto|scroll)/.test(getComputedStyle(scroller).overflowY))) scroller = scroller.parentElement;
const r = canvas.getBoundingClientRect();
const box = (el) => { const b = el.getBoundingClientRect();
  return {left: b.left, top: b.top, right: b.right, bottom: b.bottom, width: b.width, height: b.height}; };
const buttons = {};
for (const b of out.querySelectorAll('button')) {
  const label = b.textContent.trim();
  if (label) buttons[label] = Object.assign(box(b), {truncated: b.scrollWidth > b.clientWidth});
}
const toggles = out.querySelector('.widget-toggle-buttons');
const toolLabel = toggles ? toggles.querySelector('.widget-label') : null;
const status = [...out.querySelectorAll('.widget-html-content')].filter(e => e.offsetParent !== null)
  .map(e => e.innerText).filter(t => t.trim());
return {canvas: box(canvas), canvas_px: [canvas.width, canvas.height],
        rendering: getComputedStyle(canvas).imageRendering,
        focused: document.activeElement === canvas,
        active: document.activeElement ? document.activeElement.tagName + '.' + document.activeElement.className : null,
        scroll_top: scroller ? scroller.scrollTop : window.scrollY, viewport: box(scroller || document.body),
        output: box(out), buttons,
        tool_label: toolLabel ? Object.assign(box(toolLabel), {text: toolLabel.innerText}) : null,
        status: status.join('\\n')};
"""

JS_SCROLL_PAINTER = """
const canvas = document.querySelector('canvas.loraedit-painter-canvas');
const out = canvas.closest('.jp-OutputArea-output') || canvas.parentElement;
out.scrollIntoView({block: arguments[0], inline: 'nearest'});
const b = out.getBoundingClientRect();
return [b.top, b.bottom];
"""


JS_SCROLL_BY = """
const c = document.querySelector('canvas.loraedit-painter-canvas');
let s = c.parentElement;
while (s && !(s.scrollHeight > s.clientHeight + 1 && /(auto|scroll)/.test(getComputedStyle(s).overflowY)))
  s = s.parentElement;
s.scrollTop += arguments[0];
"""

JS_NCELLS = JS_PANEL + "return panel.content.model.cells.length;"


def scroll_painter(page: Page, block: str) -> None:
    """Scroll the painter's output to ``block`` ('start' / 'end') and wait until it stays there (cells out of view
    have estimated heights, so the first scroll can land short)."""
    last = None
    for _ in range(20):
        now = page.js(JS_SCROLL_PAINTER, block)
        if last is not None and max(abs(a - b) for a, b in zip(now, last, strict=True)) < 0.5:
            return
        last = now
        time.sleep(0.3)

JS_VIDEOS = """
return [...document.querySelectorAll('video')].map((v, i) => {
  const cell = v.closest('.jp-Cell');
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
  return {i, cell: cells.indexOf(cell), readyState: v.readyState, duration: v.duration,
          width: v.videoWidth, height: v.videoHeight, error: v.error ? v.error.code : null};
});
"""

KERNEL_CLICKS = """
import json as _j
print(_j.dumps([[c.x, c.y, c.frame, c.positive] for c in painter.clicks]))
"""

KERNEL_MASK = """
import json as _j, numpy as _np
_m = painter.mask[{t}]
_new = _m & ~_before if '_before' in dir() else _m
_pts = _np.argwhere(_new)
print(_j.dumps({{'n': int(_new.sum()), 'total': int(_m.sum()),
                 'x': [int(_pts[:, 1].min()), int(_pts[:, 1].max())] if len(_pts) else None,
                 'y': [int(_pts[:, 0].min()), int(_pts[:, 0].max())] if len(_pts) else None}}))
_before = _m.copy()
"""


# ----------------------------------------------------------------------------------------------- the checks
class Checks:
    def __init__(self):
        self.results: dict[str, dict] = {}

    def add(self, name: str, ok: bool, detail: str, **data) -> bool:
        self.results[name] = {"ok": bool(ok), "detail": detail, **data}
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r["ok"] for r in self.results.values())


def _loaded(state: dict | None) -> dict | None:
    return state if state and state["ready"] and state["code"] > 0 and state["kernel"] == "idle" else None


def _if(want: str, text: str) -> str | None:
    return text if want in text else None


def _quit(driver) -> None:
    with contextlib.suppress(Exception):
        driver.quit()


def within(landed, aimed, tol=1) -> bool:
    return landed is not None and all(abs(a - b) <= tol for a, b in zip(landed, aimed, strict=True))


def run(args, checks: Checks, out: Path, work: Path, info: dict) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    shutil.copytree(ROOT / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns("*.py", ".*"))
    lab = driver = None
    kernel_pid = None
    try:
        log(f"starting JupyterLab on {base} (root: a temporary copy of notebooks/)")
        lab = start_lab(work, port, token, out / "jupyterlab.log")
        wait_http(f"{base}/api/status?token={token}", 90, lab)
        log("JupyterLab is up; starting headless Chromium")
        driver = start_browser(args.chrome, args.chromedriver, args.window, out / "chromedriver.log")
        page = Page(driver)
        driver.get(f"{base}/lab/tree/{args.notebook}?token={token}")
        state = wait_for(lambda: _loaded(page.js(JS_STATE)), 120, "the notebook and an idle kernel", every=0.5)
        log(f"opened {state['path']} ({state['code']} code cells); running all cells")
        kernel_pid = int(page.kernel("import os; print(os.getpid())").strip())
        info["kernel_pid"] = kernel_pid

        # ---- run all cells
        t = time.time()
        page.js("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        last_beat, idle_since = time.time(), None
        while True:
            s = page.js(JS_STATE)
            if s["errors"]:
                break
            if s["done"] == s["code"] and s["kernel"] == "idle":
                idle_since = idle_since or time.time()
                if time.time() - idle_since > 1.0:
                    break
            else:
                idle_since = None
            if time.time() - t > args.run_timeout:
                break
            if time.time() - last_beat > 10:
                log(f"  ... {s['done']}/{s['code']} cells done, kernel {s['kernel']}")
                last_beat = time.time()
            time.sleep(0.3)
        info["run_all_s"] = round(time.time() - t, 1)
        driver.save_screenshot(str(out / "01_after_run_all.png"))
        ran = not s["errors"] and s["done"] == s["code"]
        checks.add("run_all", ran, f"{s['done']}/{s['code']} code cells ran in {info['run_all_s']} s"
                   + (f"; errors: {s['errors']}" if s["errors"] else ""), errors=s["errors"])
        if not ran:
            raise Failed("the notebook did not run through")

        # ---- the painter: layout
        wait_for(lambda: page.js(JS_PAINTER), 30, "the mask painter's canvas")
        scroll_painter(page, "end")  # all of the painter in view (it fits: that is the point)
        p = page.js(JS_PAINTER)
        overhang = p["canvas"]["bottom"] - p["viewport"]["bottom"]
        if overhang > 0:  # the output's margins: make sure the canvas itself is all in view
            page.js(JS_SCROLL_BY, overhang + 8)
            time.sleep(0.3)
        p = page.js(JS_PAINTER)
        shape = page.kernel_json("import json; print(json.dumps(list(painter.mask.shape)))")
        T, H, W = shape
        info["painter"] = {"video": shape, "dom": p}
        driver.save_screenshot(str(out / "02_painter.png"))
        c = p["canvas"]
        cw, ch = p["canvas_px"]
        fixed = abs(c["width"] - cw) < 1 and abs(c["height"] - ch) < 1 and max(c["width"], c["height"]) <= 512
        checks.add("painter_size", fixed and abs(c["width"] / c["height"] - W / H) < 0.01,
                   f"canvas {c['width']:.0f}x{c['height']:.0f} CSS px for {cw}x{ch} canvas px, video {W}x{H}")
        checks.add("painter_crisp", p["rendering"] in ("pixelated", "crisp-edges"),
                   f"image-rendering: {p['rendering']}")
        truncated = [k for k, v in p["buttons"].items() if v["truncated"]]
        tl, brush = p["tool_label"], p["buttons"].get("brush")
        same_row = bool(tl and brush and tl["top"] < brush["bottom"] and brush["top"] < tl["bottom"])
        checks.add("painter_labels", not truncated and same_row and {"box eraser", "propagate"} <= set(p["buttons"]),
                   f"buttons {sorted(p['buttons'])}; truncated: {truncated or 'none'}; "
                   f"'tool' label on the buttons' row: {same_row}")
        view = p["viewport"]
        in_view = c["top"] >= view["top"] and c["bottom"] <= view["bottom"]

        def centre(x: float, y: float) -> tuple[float, float]:
            """Viewport coordinates of the centre of video pixel (x, y), from the canvas' current position."""
            r = page.js(JS_PAINTER)["canvas"]
            return r["left"] + (x + 0.5) * r["width"] / W, r["top"] + (y + 0.5) * r["height"] / H

        def button(label: str) -> None:
            """Click one of the painter's buttons (scrolled into view first if it is not, as a user would)."""
            p = page.js(JS_PAINTER)
            b, v = p["buttons"][label], p["viewport"]
            if b["top"] < v["top"] or b["bottom"] > v["bottom"]:
                above = b["top"] < v["top"]
                page.js(JS_SCROLL_BY, b["top"] - v["top"] - 20 if above else b["bottom"] - v["bottom"] + 20)
                time.sleep(0.3)
                b = page.js(JS_PAINTER)["buttons"][label]
            page.click((b["left"] + b["right"]) / 2, (b["top"] + b["bottom"]) / 2)
            time.sleep(0.3)

        # ---- clear frame 0 with its button, brush radius 0: every painted pixel is one the pointer was on
        button("clear frame")
        page.kernel("painter.size.value = 0")
        wait_for(lambda: page.kernel_json(KERNEL_MASK.format(t=0))["total"] == 0, 10, "'clear frame' to empty frame 0")

        # ---- brush stroke, right after a click on a tool button (the focus is off the canvas)
        button("brush")
        before = page.js(JS_PAINTER)
        aim_x, aim_y = sorted((W // 5, W // 2)), [max(1, H // 10)] * 2
        seen = {}
        page.drag(centre(aim_x[0], aim_y[0]), centre(aim_x[1], aim_y[1]),
                  between=lambda stage: seen.setdefault(stage, page.js(JS_PAINTER)))
        time.sleep(0.5)
        got = page.kernel_json(KERNEL_MASK.format(t=0))
        jump = seen["pressed"]["scroll_top"] - before["scroll_top"]
        driver.save_screenshot(str(out / "03_painter_after_stroke.png"))
        info["brush"] = {"aimed": {"x": aim_x, "y": aim_y}, "landed": got, "scroll_jump_px": jump,
                         "focus_before_press": before["active"], "canvas_in_view": in_view}
        checks.add("no_page_jump", abs(jump) < 1, f"the notebook scrolled {jump:+.0f} px on the press "
                   f"(focus before it was on {before['active']!r})")
        checks.add("brush_stroke", within(got["x"], aim_x) and within(got["y"], aim_y),
                   f"aimed x {aim_x[0]}-{aim_x[1]}, y {aim_y[0]}; landed x {got['x']}, y {got['y']} "
                   f"({got['n']} px)")

        # ---- box, again right after a tool button
        button("box")
        bx, by = sorted((W // 2 + 2, W - 4)), sorted((H // 2, H - 3))
        page.drag(centre(bx[0], by[0]), centre(bx[1], by[1]),
                  between=lambda stage: stage == "dragged" and driver.save_screenshot(str(out / "04_box_drag.png")))
        time.sleep(0.5)
        got = page.kernel_json(KERNEL_MASK.format(t=0))
        after_box = page.js(JS_PAINTER)
        info["box"] = {"aimed": {"x": bx, "y": by}, "landed": got,
                       "scroll_jump_px": after_box["scroll_top"] - before["scroll_top"]}
        checks.add("box", within(got["x"], bx) and within(got["y"], by),
                   f"aimed x {bx[0]}-{bx[1]}, y {by[0]}-{by[1]}; landed x {got['x']}, y {got['y']} ({got['n']} px)")
        want = f"filled the box x {bx[0]}–{bx[1]}, y {by[0]}–{by[1]} on frame 0"
        try:
            status = wait_for(lambda: _if(want, page.js(JS_PAINTER)["status"]), 5, "the status line", every=0.2)
        except Failed:
            status = page.js(JS_PAINTER)["status"]
        driver.save_screenshot(str(out / "05_painter_after_box.png"))
        checks.add("status_line", want in status, f"status: {status.splitlines()[0] if status else status!r}")

        # ---- the keyboard: held while the pointer is on the canvas, given back when it leaves
        x, y = centre(W // 2, H // 2)
        page.click(x, y)
        held = wait_for(lambda: page.js(JS_PAINTER)["focused"], 5, "the canvas to take the focus on a press")
        page.mouse("mouseMoved", after_box["canvas"]["right"] + 60, y)
        try:
            released = wait_for(lambda: not page.js(JS_PAINTER)["focused"], 5, "the canvas to give the focus back")
        except Failed:
            released = False
        # then a click beside the canvas gives the notebook the keyboard: Esc, B inserts a cell below
        n0 = page.js(JS_NCELLS)
        page.click(after_box["canvas"]["right"] + 60, y)
        ActionChains(driver).send_keys(Keys.ESCAPE).send_keys("b").perform()
        try:
            shortcuts = bool(wait_for(lambda: page.js(JS_NCELLS) == n0 + 1, 5, "Esc, B to insert a cell"))
        except Failed:
            shortcuts = False
        checks.add("keyboard_released", bool(held and released and shortcuts),
                   f"canvas focused on a press: {bool(held)}; focus given back when the pointer left: {released}; "
                   f"then a click beside it and Esc, B inserted a cell: {shortcuts}")
        page.kernel("painter.undo()")

        # ---- click-to-track: one press with "click +" reaches the kernel as a click at the video pixel aimed at
        # (SAM2 when its weights are there, else the flow stand-in, which the status line announces)
        button("click +")
        px, py = W // 3, H // 2
        page.click(*centre(px, py))
        try:
            got = wait_for(lambda: page.kernel_json(KERNEL_CLICKS) or None, 90, "the click to reach the kernel")
        except Failed:
            got = []
        driver.save_screenshot(str(out / "05b_painter_after_click.png"))
        last = got[-1] if got else None
        status = page.js(JS_PAINTER)["status"] or ""
        info["click"] = {"aimed": {"x": px, "y": py}, "clicks": got, "status": status.splitlines()[:2]}
        checks.add("click_tool", bool(last) and within(last[:2], (px, py)) and last[2] == 0 and last[3] is True,
                   f"aimed ({px}, {py}) on frame 0; the kernel got {last} (x, y, frame, positive); status: "
                   f"{status.splitlines()[0] if status else status!r}")
        page.kernel("painter.undo()")

        # ---- videos
        def videos():
            v = page.js(JS_VIDEOS)
            return v if v and all(e["readyState"] >= 2 for e in v) else None

        try:
            vids = wait_for(videos, args.video_timeout, "every <video> to have a frame", every=0.5)
        except Failed:
            vids = page.js(JS_VIDEOS)
        info["videos"] = vids
        bad = [v for v in vids if v["readyState"] < 2]
        checks.add("videos", bool(vids) and not bad,
                   f"{len(vids)} <video> elements, readyState {sorted({v['readyState'] for v in vids})}"
                   + (f"; not ready: {bad}" if bad else ""))

        # ---- for the record (not a check): a press on a canvas that is only partly in view
        if args.partial_view:
            scroll_painter(page, "end")
            page.js(JS_SCROLL_BY, -page.js(JS_PAINTER)["canvas"]["height"] / 3)  # its lower third out of view
            time.sleep(0.4)
            button("brush")
            b0 = page.js(JS_PAINTER)
            px, py = W // 4, H // 4
            if centre(px, py)[1] > b0["viewport"]["top"]:
                page.kernel_json(KERNEL_MASK.format(t=0))
                page.click(*centre(px, py))
                time.sleep(0.5)
                got = page.kernel_json(KERNEL_MASK.format(t=0))
                hidden = b0["canvas"]["bottom"] - b0["viewport"]["bottom"]
                info["partial_view"] = {"aimed": [px, py], "landed": got, "canvas_px_out_of_view": hidden,
                                        "scroll_jump_px": page.js(JS_PAINTER)["scroll_top"] - b0["scroll_top"]}
                log(f"note: with {hidden:.0f} px of the canvas out of view, a press at pixel ({px}, {py}) scrolled "
                    f"the notebook {info['partial_view']['scroll_jump_px']:+.0f} px; landed x {got['x']}, y {got['y']}")
                driver.save_screenshot(str(out / "06_partly_in_view.png"))
    finally:
        signal.alarm(0)  # the clean-up below must not be cut short by the overall timeout (it has its own)
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.save_screenshot(str(out / "99_last.png"))
            pid = getattr(getattr(driver.service, "process", None), "pid", None)
            quitter = threading.Thread(target=_quit, args=(driver,), daemon=True)
            quitter.start()
            quitter.join(15)  # a hung browser is killed below
            kill_tree(pid, "chromedriver + Chromium", grace=3)
        if lab is not None:
            shutdown_kernels(base, token)
            kill_tree(lab.pid, "JupyterLab")
        if kernel_pid and _alive(kernel_pid):
            kill_tree(kernel_pid, "the kernel", grace=3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/browser_test", help="screenshots, result.json and logs go here")
    ap.add_argument("--notebook", default=NOTEBOOK, help="a notebook of notebooks/ that shows `painter`")
    ap.add_argument("--chrome", default=shutil.which("chromium") or shutil.which("chromium-browser")
                    or shutil.which("google-chrome") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--window", default="1400,1000", help="browser window size, WIDTH,HEIGHT")
    ap.add_argument("--run-timeout", type=float, default=240, help="seconds for Run All Cells")
    ap.add_argument("--video-timeout", type=float, default=30, help="seconds for every <video> to be ready")
    ap.add_argument("--timeout", type=float, default=420, help="seconds for everything (then clean up and fail)")
    ap.add_argument("--no-partial-view", dest="partial_view", action="store_false",
                    help="skip the informational press on a canvas that is only partly in view")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.png"):
        f.unlink()

    def on_alarm(*_):
        raise Timeout(f"the whole test ran past --timeout {args.timeout:.0f} s")

    def on_term(*_):
        raise KeyboardInterrupt("terminated")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(args.timeout))
    checks, info, error = Checks(), {}, None
    work = Path(tempfile.mkdtemp(prefix="loraedit-browser-"))
    try:
        run(args, checks, out, work, info)
    except (Failed, Timeout, KeyboardInterrupt) as e:
        error = f"{type(e).__name__}: {e}"
    except Exception as e:  # a selenium or JupyterLab surprise: report it, never leave processes behind
        error = f"{type(e).__name__}: {e}".splitlines()[0]
    finally:
        signal.alarm(0)
        shutil.rmtree(work, ignore_errors=True)
    if error:
        checks.add("completed", False, error)
    seconds = round(time.time() - T0, 1)
    result = {"ok": checks.ok, "seconds": seconds, "checks": checks.results, "error": error, **info}
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"{'PASSED' if checks.ok else 'FAILED'}: {sum(r['ok'] for r in checks.results.values())}/"
          f"{len(checks.results)} checks in {seconds} s; screenshots and result.json in {out}", flush=True)
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
