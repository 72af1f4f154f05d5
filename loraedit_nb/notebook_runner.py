"""Execute the tutorial notebooks headless (nbclient) with this interpreter as the kernel; used by ``make demo``
and the notebook tests. Executed copies and HTML exports are written next to each other."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def this_interpreter_kernel() -> str:
    """Put a kernelspec ``python3`` pointing at ``sys.executable`` first on ``JUPYTER_PATH`` (no ipykernel install
    needed on a clean clone). Returns the kernel name."""
    root = Path(tempfile.mkdtemp(prefix="loraedit_jupyter_"))
    kdir = root / "kernels" / "python3"
    kdir.mkdir(parents=True)
    # log level ERROR: the kernel's "running over TCP without encryption" notice (local, headless) is noise here
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],
            "display_name": "Python 3 (loraedit_nb)", "language": "python"}
    (kdir / "kernel.json").write_text(json.dumps(spec))
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), os.environ.get("JUPYTER_PATH", "")])
    return "python3"


def inject_parameters(nb, parameters: dict) -> None:
    """Put a cell setting ``parameters`` right after the cell tagged ``parameters`` (papermill's convention)."""
    import nbformat

    idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if idx is None:
        raise ValueError("the notebook has no cell tagged 'parameters' to override")
    src = "# injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))


def _cell_label(cell, idx: int, n: int) -> str:
    """``cell 7/31 `rows = run_comparison(...)```: the cell's first top-level statement that does something (not a
    comment, import, def, class or decorator), else its first code line."""
    lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    skip = ("def ", "class ", "import ", "from ", "@", "async def ")
    first = next((ln for ln in lines if not ln[0].isspace() and not ln.startswith(skip)), lines[0] if lines else "")
    return f"cell {idx + 1}/{n}" + (f" `{first.strip()[:60]}`" if first else "")


class Heartbeat:
    """While the ``with`` block runs, prints ``[name] 60 s, <where>`` every ``every`` seconds (0: never), e.g.
    ``[05_evaluation] 60 s, cell 7/31 `rows = run_comparison(...)```, so a long step never looks like a hang."""

    def __init__(self, name: str, every: float):
        import threading

        self.name, self.every, self.t0, self.where = name, every, time.time(), "running"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            print(f"  [{self.name}] {time.time() - self.t0:.0f} s, {self.where}", flush=True)

    def __enter__(self):
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def run_notebook(path: str | os.PathLike, out_dir: str | os.PathLike, *, timeout: int | None = 900,
                 parameters: dict | None = None, name: str | None = None, heartbeat: float = 0,
                 html: bool = True) -> tuple[float, str | None]:
    """Run one notebook top to bottom; write the executed copy (and, with ``html``, an HTML export) into
    ``out_dir`` as ``name`` (default the notebook's own). ``parameters`` override the parameters cell (e.g.
    ``{"BACKBONE": ...}``). ``timeout``: seconds per cell (None: no limit). ``heartbeat``: print a progress line
    every that many seconds (0: silent).

    Never raises for the notebook's own failures: a failing cell, a cell past ``timeout`` and a dead kernel all come
    back as the error message, and the executed copy is written either way. Returns ``(seconds, error or None)``."""
    import nbformat
    from nbclient import NotebookClient

    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    if parameters:
        inject_parameters(nb, parameters)
    out_name = Path(name or path.name)
    beat = Heartbeat(out_name.stem, heartbeat)
    beat.where = "starting the kernel"
    current: dict = {}

    def on_cell_start(cell, cell_index, **_):
        current.update(index=cell_index, label=_cell_label(cell, cell_index, len(nb.cells)))
        beat.where = current["label"]

    client = NotebookClient(nb, timeout=timeout, kernel_name=this_interpreter_kernel(),
                            resources={"metadata": {"path": str(ROOT)}}, on_cell_start=on_cell_start)
    t0 = time.time()
    error = None
    try:
        with beat:
            client.execute()
    except Exception as e:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...: report, don't escape
        where = current.get("label", "before the first cell")
        if type(e).__name__ == "CellTimeoutError":
            error = f"{where} ran past the {timeout} s cell timeout"
        else:
            error = f"{where}: {type(e).__name__}: {e}"
    finally:
        seconds = round(time.time() - t0, 1)
        nbformat.write(nb, out_dir / out_name.with_suffix(".ipynb"))
        if html:
            try:
                from nbconvert import HTMLExporter

                from .widgets import for_static_page  # the painter's still picture instead of an empty widget box

                (out_dir / out_name.with_suffix(".html")).write_text(
                    HTMLExporter().from_notebook_node(for_static_page(nb))[0])
            except Exception as e:  # an export problem must not hide the notebook's own result
                warnings.warn(f"HTML export of {path.name} failed: {e}", stacklevel=1)
    return seconds, error


@dataclass
class NotebookRun:
    """One notebook's outcome: ``status`` is ``"ok"`` or ``"FAILED"``; ``error`` says where and why."""

    name: str
    seconds: float
    status: str
    error: str | None = None


def run_all(out_dir: str | os.PathLike, paths: list[Path] | None = None, *, timeout: int | None = 900,
            heartbeat: float = 20, on_result=None) -> list[NotebookRun]:
    """Run every numbered notebook (or ``paths``) in turn, whatever the earlier ones did, printing a line per
    notebook and a progress line every ``heartbeat`` seconds. ``on_result(runs)`` is called after each notebook
    (the demo rewrites its report there). Writes ``timings.json``; returns one :class:`NotebookRun` each."""
    runs: list[NotebookRun] = []
    for p in paths if paths is not None else notebooks():
        p = Path(p)
        print(f"running {p.name} ...", flush=True)
        seconds, err = run_notebook(p, out_dir, timeout=timeout, heartbeat=heartbeat)
        runs.append(NotebookRun(p.stem, seconds, "FAILED" if err else "ok", err))
        print(f"  {p.stem}: {seconds} s {'FAILED: ' + err.splitlines()[0][:300] if err else 'ok'}", flush=True)
        Path(out_dir, "timings.json").write_text(json.dumps({r.name: r.seconds for r in runs}, indent=1))
        if on_result is not None:
            on_result(runs)
    return runs
