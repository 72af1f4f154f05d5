"""The install story stays consistent: pyproject == environment.yml, README test command == .ci/run."""

import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    want = {_norm(r) for r in py["dependencies"] + py["optional-dependencies"]["dev"]}
    env = ROOT / "environment.yml"
    lines = env.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "- pip:")
    pip_lines = [ln.strip()[2:] for ln in lines[start + 1 :] if ln.strip().startswith("- ")]
    have = {_norm(x) for x in pip_lines if not x.startswith("-e")}
    assert have == want, f"only in environment.yml: {have - want}; only in pyproject: {want - have}"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\s*\n(.+?)\n```", readme, re.S)
    assert m, "README must show the test command in a ```bash block after <!-- test-command -->"
    cmd = m.group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmd in ci.splitlines(), f"{cmd!r} not a line of .ci/run"


def test_loading_the_toy_backbone_prints_nothing_on_stderr():
    """The learner's first cell: no torchvision fallback notice, no weight-loading bar (issue 14, finding 3)."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", "from loraedit_nb.models import load_backbone; load_backbone('toy')"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "", p.stderr


def test_only_the_torchvision_fallback_notice_is_dropped():
    import logging

    import loraedit_nb

    f = loraedit_nb._DropTorchvisionFallbackNotice()
    rec = logging.LogRecord("transformers.utils.import_utils", logging.WARNING, "x", 1,
                            "`CLIPImageProcessor` requires torchvision (not installed); falling back to "
                            "`CLIPImageProcessorPil` for backward compatibility.", None, None)
    other = logging.LogRecord("transformers.utils.import_utils", logging.WARNING, "x", 1,
                              "`SomethingElse` requires torchvision (not installed).", None, None)
    assert not f.filter(rec) and f.filter(other)


def test_the_hub_loaders_image_processor_reads_a_subfolder_and_matches_the_saved_one(tmp_path, tiny):
    """The Hub paths (Wan, HunyuanVideo) load the CLIP processor as clip_image_processor_class().from_pretrained(
    repo, subfolder="image_processor"); on a saved folder it must give the same pixels as the processor saved."""
    import numpy as np

    from loraedit_nb.models import clip_image_processor_class

    tiny.image_processor.save_pretrained(tmp_path / "image_processor")
    proc = clip_image_processor_class().from_pretrained(tmp_path, subfolder="image_processor")
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    a = proc(images=img, return_tensors="pt")["pixel_values"]
    b = tiny.image_processor(images=img, return_tensors="pt")["pixel_values"]
    assert a.shape == b.shape and float((a - b).abs().max()) == 0.0
