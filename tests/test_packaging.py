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
