"""The install story stays consistent: pyproject == environment.yml, README test command == .ci/run; names and
links a newcomer meets point somewhere (no issue numbers, no broken relative links)."""

import re
import subprocess

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


PINNED = ("torch", "torchvision")  # environment.yml and the Makefile pin a pair; pyproject.toml gives a range


def _env_pip_lines() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "- pip:")
    return [ln.strip()[2:].split("#")[0].strip() for ln in lines[start + 1 :] if ln.strip().startswith("- ")]


def test_environment_yml_matches_pyproject():
    from packaging.requirements import Requirement

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r.split("#")[0]) for r in py["dependencies"] + py["optional-dependencies"]["dev"]]
    want = {_norm(str(r)) for r in reqs if r.name not in PINNED}
    env = [Requirement(x) for x in _env_pip_lines() if not x.startswith("-e")]
    have = {_norm(str(r)) for r in env if r.name not in PINNED}
    assert have == want, f"only in environment.yml: {have - want}; only in pyproject: {want - have}"
    ranges = {r.name: r.specifier for r in reqs}
    for r in (r for r in env if r.name in PINNED):  # the pinned pair lies inside pyproject's range
        (pin,) = r.specifier
        assert pin.operator == "==" and ranges[r.name].contains(pin.version), (str(r), str(ranges[r.name]))
    assert sorted(r.name for r in env if r.name in PINNED) == sorted(PINNED)


def test_the_makefile_installs_the_pinned_pair():
    env = {r.split("==")[0]: r for r in _env_pip_lines() if r.split("==")[0] in PINNED}
    make = re.search(r"^TORCH \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert sorted(make) == sorted(env.values())


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\s*\n(.+?)\n```", readme, re.S)
    assert m, "README must show the test command in a ```bash block after <!-- test-command -->"
    cmd = m.group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert cmd in ci.splitlines(), f"{cmd!r} not a line of .ci/run"


def test_loading_the_toy_backbone_prints_nothing_on_stderr():
    """The learner's first cell: no torchvision fallback notice, no weight-loading bar."""
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


# Names by content: an issue number means nothing to someone who cloned the repo, and a link must lead to a file
# that a clone has.
NAMED_DIRS = ("loraedit_nb/", "scripts/", "experiments/", "results/", "docs/", "tests/")
ISSUE_IN_NAME = re.compile(r"issue[\s_-]*#?\d", re.I)
ISSUE_IN_TEXT = re.compile(r"\bissue\s*#?\d+", re.I)
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")  # embedded pictures in docs/: not prose


def _tracked() -> list[str]:
    import pytest

    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.decode().split("\0") if f]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_file_is_named_or_reasoned_by_an_issue_number():
    files = [f for f in _tracked() if f == "README.md" or f.startswith(NAMED_DIRS)]
    bad_names = [f for f in files if ISSUE_IN_NAME.search(f)]
    bad_text = []
    for f in files:
        text = _text(ROOT / f) if (ROOT / f).is_file() else None
        if text is None:
            continue
        for i, line in enumerate(DATA_URI.sub("", text).splitlines(), 1):
            if ISSUE_IN_TEXT.search(line):
                bad_text.append(f"{f}:{i}: {line.strip()[:100]}")
    assert not bad_names, f"name these by what they hold: {bad_names}"
    assert not bad_text, "say what a choice is and why, not which issue asked for it:\n" + "\n".join(bad_text)


MD_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MD_REF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
CODE = re.compile(r"^(```|~~~).*?^\1\s*$|`[^`\n]+`", re.M | re.S)


def test_every_relative_link_in_the_docs_resolves():
    tracked = _tracked()
    tracked_set = set(tracked)
    dirs = {str(Path(f).parent) for f in tracked} | {str(p) for f in tracked for p in Path(f).parents}
    pages = [f for f in tracked if f in ("README.md", "experiments/README.md")
             or (f.startswith("docs/") and f.count("/") == 1 and f.endswith(".md"))
             or (f.startswith("results/") and f.endswith(".md"))]
    assert "README.md" in pages and any(p.startswith("results/") for p in pages)
    broken = []
    for page in pages:
        text = CODE.sub("", (ROOT / page).read_text(encoding="utf-8"))
        for target in MD_LINK.findall(text) + MD_REF.findall(text):
            if re.match(r"(?i)(https?:|mailto:|data:|#)", target):
                continue
            rel = target.split("#", 1)[0].split("?", 1)[0]
            resolved = (ROOT / page).parent / rel
            try:
                key = resolved.resolve().relative_to(ROOT.resolve()).as_posix()
            except ValueError:
                broken.append(f"{page}: {target} (outside the repository)")
                continue
            if key not in tracked_set and key not in dirs:
                broken.append(f"{page}: {target}")
    assert not broken, "links to files a clone does not have:\n" + "\n".join(broken)


REPO_PATH = re.compile(r"(?<![\w./-])((?:loraedit_nb|scripts|experiments|results|docs|tests|data|notebooks)/[\w./-]*)")


def test_every_repository_path_quoted_in_the_readmes_and_results_exists():
    """Paths in code spans and blocks (`results/...`, `python experiments/...`) are how these pages point at files
    most of the time; a rename must update them too."""
    tracked = _tracked()
    have = set(tracked) | {p.as_posix() for f in tracked for p in Path(f).parents}
    pages = [f for f in tracked if f in ("README.md", "experiments/README.md")
             or (f.startswith("results/") and f.endswith(".md"))]
    missing = []
    for page in pages:
        for code in CODE.finditer((ROOT / page).read_text(encoding="utf-8")):
            for path in REPO_PATH.findall(code.group(0)):
                if path.rstrip(".,:;").rstrip("/") not in have:
                    missing.append(f"{page}: {path}")
    assert not missing, "paths a clone does not have:\n" + "\n".join(missing)


def test_readme_fits_on_a_few_screens_and_indexes_the_guides():
    """The README keeps the essentials; details live in docs/, whose index lists every guide page."""
    from loraedit_nb.publish import GUIDES

    root = Path(__file__).resolve().parent.parent
    assert len((root / "README.md").read_text().splitlines()) <= 150
    index = (root / "docs" / "README.md").read_text()
    for name, _, _ in GUIDES:
        assert (root / "docs" / name).exists() and f"]({name})" in index, name
