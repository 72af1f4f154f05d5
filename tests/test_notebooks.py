"""Run every tutorial notebook top to bottom on the toy backbone (nbclient) and fail on any error.

Executed copies (and HTML exports) go to ``outputs/notebooks/``, with the wall time of each run in
``outputs/notebooks/timings.json``. Select or skip these with ``-m notebooks`` / ``-m "not notebooks"``.
The kernel is this interpreter: a kernelspec named ``python3`` pointing at ``sys.executable`` is put first on
``JUPYTER_PATH`` for the run, so a clean clone after ``pip install -e ".[dev]"`` needs no ``ipykernel install``.
On a CPU the notebooks use ``$LORAEDIT_THREADS`` torch threads (default 1: on a shared 2-core machine more threads
made training ~10x slower).
"""

import json
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OUT = ROOT / "outputs" / "notebooks"
CELL_TIMEOUT = 900  # seconds per cell: generous, a shared 2-core machine is slow
BUDGET = 7 * 60  # seconds for notebooks 01-04 together on 2 CPU cores (the fifth gets the rest of 10 minutes)

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def timings():
    times: dict[str, float] = {}
    yield times
    if times:
        OUT.mkdir(parents=True, exist_ok=True)
        old = json.loads((OUT / "timings.json").read_text()) if (OUT / "timings.json").exists() else {}
        (OUT / "timings.json").write_text(json.dumps(old | times, indent=1))
        core = sum(v for k, v in times.items() if k[:2] in ("01", "02", "03", "04"))
        if len([k for k in times if k[:2] in ("01", "02", "03", "04")]) == 4 and core > BUDGET:
            warnings.warn(f"notebooks 01-04 took {core:.0f} s together, over the {BUDGET} s budget", stacklevel=1)


def test_notebooks_exist_and_are_paired():
    assert [p.stem[:2] for p in NOTEBOOKS][:4] == ["01", "02", "03", "04"], NOTEBOOKS
    for p in NOTEBOOKS:
        assert p.with_suffix(".py").exists(), f"{p.name} has no paired jupytext file {p.stem}.py"
        nb = json.loads(p.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), \
            f"{p.name} is committed with outputs: strip them (jupyter nbconvert --clear-output)"
        import jupytext

        text = jupytext.read(p.with_suffix(".py"))
        assert [(c.cell_type, c.source) for c in text.cells] == [(c["cell_type"], "".join(c["source"]))
                                                                   for c in nb["cells"]], \
            f"{p.name} and {p.stem}.py differ: run `jupytext --sync {p.with_suffix('.py').relative_to(ROOT)}`"
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and "BACKBONE" in "".join(tagged[0]["source"]), f"{p.name}: parameters cell"


# The test runs train the toy LoRAs for half the notebooks' default steps (02-04 alike, so that 03 and 04 still reuse
# 02's LoRA): every floor the notebooks assert holds there with room (measured: 02's region gain +9.0 dB against
# 1 dB, 03's margins +1.8 / +2.0 dB against 0.5 / 1.0, 05's background gap 15.1 dB against 3 dB), and the suite
# saves ~5 minutes. `make site` and `make demo` run the defaults, and the published figures come from them.
TEST_PARAMS = {"02": {"TRAIN_STEPS": 400, "PREVIEW_EVERY": 400}, "03": {"TRAIN_STEPS": 400},
               "04": {"TRAIN_STEPS": 400}, "05": {"TRAIN_STEPS": 200}}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, timings):
    from loraedit_nb.notebook_runner import run_notebook

    seconds, error = run_notebook(path, OUT, timeout=CELL_TIMEOUT, parameters=TEST_PARAMS.get(path.stem[:2]))
    timings[path.stem] = seconds
    if error is not None:
        pytest.fail(f"{path.name} failed after {seconds} s (executed copy: {OUT / path.name}):\n{error}", pytrace=False)


# The same notebooks with the other backbones, on tiny random configs (plumbing only: quality floors are asserted
# on the pretrained toy backbone alone): HunyuanVideo-I2V, Wan2.2-I2V-A14B (two experts), Wan2.2-TI2V-5B (token
# mask). Runs after the toy runs, which reuse each other's LoRA.
OTHER_PARAMS = {"TRAIN_STEPS": 4, "APPEARANCE_STEPS": 2, "REUSE_02": False, "PREVIEW_EVERY": 4}
OTHER_BACKBONES = ("tiny-hunyuan", "tiny-wan22-a14b", "tiny-wan22-ti2v")


@pytest.mark.parametrize("backbone", OTHER_BACKBONES)
@pytest.mark.parametrize("path", NOTEBOOKS[:4], ids=lambda p: p.stem)
def test_notebook_runs_with_the_other_backbones(path, backbone):
    import nbformat

    from loraedit_nb.notebook_runner import run_notebook

    names = set("".join(c["source"]) for c in nbformat.read(path, as_version=4).cells
                if "parameters" in c.get("metadata", {}).get("tags", []))
    params = {k: v for k, v in {"BACKBONE": backbone, **OTHER_PARAMS}.items() if k in next(iter(names))}
    name = f"{path.stem}_{backbone}"
    seconds, error = run_notebook(path, OUT, timeout=CELL_TIMEOUT, parameters=params, name=name, html=False)
    if error is not None:
        pytest.fail(f"{path.name} with {params} failed after {seconds} s:\n{error}", pytrace=False)
    executed = nbformat.read(OUT / (name + ".ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert backbone in text, "the notebook should report the backbone it ran"


def test_every_notebook_opens_with_the_same_setup_cell_and_colab_says_what_to_set(tmp_path, monkeypatch):
    import sys
    import types

    firsts = {p.name: next("".join(c["source"]) for c in json.loads(p.read_text())["cells"]
                           if c["cell_type"] == "code") for p in NOTEBOOKS}
    assert len(set(firsts.values())) == 1, "the setup cells differ: keep one text in every notebook"
    src = next(iter(firsts.values()))
    assert "PLACEHOLDER" not in src and "github.com/loraedit" not in src
    # on "Colab" without LORAEDIT_REPO and without a clone: a message that says what to set, no clone attempted
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the cell puts the clone first on sys.path
    monkeypatch.setenv("LORAEDIT_THREADS", str(torch.get_num_threads()))  # setup() must not change this session's
    monkeypatch.delenv("LORAEDIT_REPO", raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: calls.append(a))
    with pytest.raises(RuntimeError, match=r"%env LORAEDIT_REPO=https://github.com/<owner>/loraedit_nb"):
        exec(compile(src, "setup-cell", "exec"), {})
    assert calls == []
    # with it set: clone that URL, then install the clone
    monkeypatch.setenv("LORAEDIT_REPO", "https://example.invalid/me/loraedit_nb")
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(
        output=types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("widgets"))))
    namespace: dict = {}
    exec(compile(src, "setup-cell", "exec"), namespace)
    assert namespace["DEVICE"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert calls[0][0][:5] == ["git", "clone", "--depth", "1", "https://example.invalid/me/loraedit_nb"]
    assert "install" in calls[1][0] and calls[2] == "widgets"
