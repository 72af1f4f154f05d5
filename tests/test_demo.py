"""The main job never dies of one slow or broken notebook: the runner reports a cell past its timeout like any
failure, keeps going, and the demo always writes its report and exits non-zero naming what failed."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat

from loraedit_nb.notebook_runner import run_all, run_notebook


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def test_runner_survives_a_cell_that_outlives_its_timeout(tmp_path, capsys):
    slow = _notebook(tmp_path / "slow.ipynb", "print('first')", "__import__('time').sleep(60)", "print('never')")
    ok = _notebook(tmp_path / "ok.ipynb", "print(6 * 7)")
    runs = run_all(tmp_path / "out", [slow, ok], timeout=3, heartbeat=1)
    assert [(r.name, r.status) for r in runs] == [("slow", "FAILED"), ("ok", "ok")]
    assert "cell 2/3" in runs[0].error and "3 s cell timeout" in runs[0].error, runs[0].error
    assert runs[0].seconds < 40, "the timeout did not stop the cell"
    executed = nbformat.read(tmp_path / "out" / "slow.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "first\n"  # written even though it failed
    assert "42" in nbformat.read(tmp_path / "out" / "ok.ipynb", as_version=4).cells[0].outputs[0]["text"]
    printed = capsys.readouterr().out
    assert "[slow]" in printed and "cell 2/3 `__import__('time').sleep(60)`" in printed, printed
    assert json.loads((tmp_path / "out" / "timings.json").read_text()).keys() == {"slow", "ok"}


def test_runner_reports_an_error_with_the_cell(tmp_path):
    bad = _notebook(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    seconds, error = run_notebook(bad, tmp_path / "out", timeout=60, html=False)
    assert error is not None and "cell 2/2" in error and "broken on purpose" in error


def test_demo_with_a_notebook_past_its_timeout_writes_the_report_and_exits_nonzero(tmp_path):
    slow = _notebook(tmp_path / "07_slow.ipynb", "import time\ntime.sleep(60)")
    ok = _notebook(tmp_path / "08_ok.ipynb", "print('fine')")
    out = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "loraedit_nb", "demo", "--out", str(out), "--only-notebooks",
                        "--notebook", str(slow), "--notebook", str(ok), "--cell-timeout", "3"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "notebook 07_slow" in p.stderr and "report.md" in p.stderr
    report = (out / "report.md").read_text()
    assert "FAILED: notebook 07_slow" in report and "| 08_ok | ok |" in report and "| 07_slow | FAILED |" in report
    assert "cell timeout" in report
    rep = json.loads((out / "report.json").read_text())
    assert rep["failed"] == ["notebook 07_slow"] and rep["stages"]["notebooks"]["08_ok"]["status"] == "ok"
