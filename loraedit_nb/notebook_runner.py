"""Execute the tutorial notebooks headless (nbclient) with this interpreter as the kernel; used by ``make demo``
and the notebook tests. Executed copies and HTML exports are written next to each other."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
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
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
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


def run_notebook(path: str | os.PathLike, out_dir: str | os.PathLike, *, timeout: int = 900,
                 parameters: dict | None = None, name: str | None = None) -> tuple[float, str | None]:
    """Run one notebook top to bottom; write the executed copy and an HTML export into ``out_dir`` (as ``name``,
    default the notebook's own). ``parameters`` override the parameters cell (e.g. ``{"BACKBONE": ...}``).
    Returns ``(seconds, error message or None)``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    if parameters:
        inject_parameters(nb, parameters)
    out_name = Path(name or path.name)
    client = NotebookClient(nb, timeout=timeout, kernel_name=this_interpreter_kernel(),
                            resources={"metadata": {"path": str(ROOT)}})
    t0 = time.time()
    error = None
    try:
        client.execute()
    except CellExecutionError as e:
        error = str(e)
    finally:
        seconds = round(time.time() - t0, 1)
        nbformat.write(nb, out_dir / out_name.with_suffix(".ipynb"))
        try:
            from nbconvert import HTMLExporter

            (out_dir / out_name.with_suffix(".html")).write_text(HTMLExporter().from_notebook_node(nb)[0])
        except Exception as e:  # an export problem must not hide the notebook's own result
            warnings.warn(f"HTML export of {path.name} failed: {e}", stacklevel=1)
    return seconds, error


def run_all(out_dir: str | os.PathLike) -> dict[str, float]:
    """Run every numbered notebook; raise after all have run if any failed. Returns wall seconds per notebook."""
    times, errors = {}, {}
    for p in notebooks():
        print(f"running {p.name} ...", flush=True)
        times[p.stem], err = run_notebook(p, out_dir)
        print(f"  {times[p.stem]} s{' FAILED' if err else ''}", flush=True)
        if err:
            errors[p.name] = err[-1500:]
    Path(out_dir, "timings.json").write_text(json.dumps(times, indent=1))
    if errors:
        raise RuntimeError("notebooks failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    return times
