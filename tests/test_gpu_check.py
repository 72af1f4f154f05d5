import csv
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
FULL_SIZE = (49, 480, 832)


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(SCRIPTS))  # spawned children copy sys.path, so they import it the same way
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(SCRIPTS))


def _lines(out: str) -> list[str]:
    return [x for x in out.splitlines() if x.startswith("[gpu_check]")]


# ----------------------------------------------------------------------------------------------- the run
def test_gpu_check_dry_runs_on_cpu(gpu_check, tmp_path):
    """The H200 script's whole path (full-width 1-layer Wan + full-width 1-2-layer UMT5/CLIP + the real VAE, a fresh
    process per preset, caching, 2 training steps through train_lora, a 1-step edit with the preset, then the fresh
    process's default-preset edit of the saved LoRA) on a 5x32x32 clip. ~50 s on 2 idle cores (80 s when the
    machine is shared)."""
    t0 = time.monotonic()
    summary = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    elapsed = time.monotonic() - t0
    assert elapsed < 180, elapsed  # generous: ~50 s on 2 idle cores
    rec = summary["presets"]["80GB+"]
    assert rec.get("ok"), json.dumps(rec, indent=1)
    st = rec["stages"]
    assert list(st) == ["build", "cache", "train", "edit", "fresh_edit"]
    assert st["cache"]["latents"] == [1, 16, 2, 4, 4] and st["cache"]["condition"] == [1, 20, 2, 4, 4]
    assert st["train"]["s_per_step"] > 0 and len(st["train"]["step_seconds"]) == 2 and st["train"]["mfu"] > 0
    assert st["edit"]["output"] == [5, 32, 32, 3] and st["edit"]["finite"]
    assert st["edit"]["settings"]["memory_preset"] == "80GB+"
    # the planner's figure beside each measured stage, for this 1-layer config and preset
    plan = rec["plan"]
    assert plan["for"] == "80GB+" and plan["fits"], plan
    for stage, key in gpu_check.STAGE_PLAN.items():
        assert st[stage]["predicted_gpu_gb"] == plan["stages"][key] > 0, stage
    # the LoRA was saved outside OUT for the fresh process and removed afterwards
    assert st["train"]["lora_mb"] > 0 and not Path(st["train"]["lora_dir"]).exists()
    assert not Path(st["train"]["lora_dir"]).is_relative_to(tmp_path)
    # the fresh edit: another process, the saved folder, the default memory_preset (no placement on the CPU)
    fresh = st["fresh_edit"]
    assert fresh["pid"] != rec["pid"] and os.getpid() not in (fresh["pid"], rec["pid"])
    assert fresh["lora"] == "saved folder" and fresh["output"] == [5, 32, 32, 3] and fresh["finite"]
    assert fresh["chosen_preset"] is None and "memory_preset" not in fresh["settings"]
    assert fresh["blocks_to_swap"] == 0 and fresh["build_seconds"] > 0
    assert fresh["timeout_s"] == rec["timeout_s"] == 180
    assert summary["packages"]["diffusers"] and summary["packages"]["ftfy"]
    # written after every stage / preset, with a file-name-safe preset name ($OUT returns only such names)
    assert list(json.loads((tmp_path / "preset_80GBplus.json").read_text())["stages"])[-1] == "fresh_edit"
    assert json.loads((tmp_path / "gpu_check.json").read_text())["presets"]["80GB+"]["ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json", "preset_80GBplus.json"]


def test_gpu_check_budget_skips_presets(gpu_check, tmp_path):
    summary = gpu_check.main(["--dry-run", "--presets", "24GB", "16GB", "--budget-s", "0", "--out", str(tmp_path)])
    assert set(summary["presets"]) == {"24GB", "16GB"}
    assert all("time budget" in r["skipped"] for r in summary["presets"].values())


def test_each_preset_has_its_own_timeout_and_no_bitsandbytes_means_adamw(gpu_check, tmp_path, monkeypatch,
                                                                         capsys):
    """A preset's process is killed after --preset-timeout-s although the budget has far more left; the fresh edit
    is then skipped (nothing was built). Without bitsandbytes the 24GB preset is run with optimizer="adamw" and the
    record says so, also for a process that died."""
    versions = {**gpu_check.package_versions(), "bitsandbytes": None}
    monkeypatch.setattr(gpu_check, "package_versions", lambda: versions)
    t0 = time.monotonic()
    summary = gpu_check.main(["--dry-run", "--presets", "24GB", "--preset-timeout-s", "1", "--out", str(tmp_path)])
    assert time.monotonic() - t0 < 60
    rec = summary["presets"]["24GB"]
    assert rec["error"] == "timed out after 1 s" and rec["timeout_s"] == 1 and not rec["ok"]
    assert "did not build" in rec["stages"]["fresh_edit"]["skipped"]
    assert rec["overrides"] == {"optimizer": "adamw"} and "bitsandbytes missing" in rec["note"]
    assert any("bitsandbytes is missing" in x for x in _lines(capsys.readouterr().out))


def test_missing_packages_stop_the_check_in_one_line(gpu_check, tmp_path, monkeypatch, capsys):
    versions = {**gpu_check.package_versions(), "diffusers": None, "ftfy": None}
    monkeypatch.setattr(gpu_check, "package_versions", lambda: versions)
    summary = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    lines = _lines(capsys.readouterr().out)
    assert len(lines) == 1 and "diffusers, ftfy" in lines[0] and "--prepare-wheels" in lines[0], lines
    assert summary["presets"] == {} and "diffusers" in summary["error"]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["packages"]["ftfy"] is None


def test_gpu_check_refuses_an_unknown_preset(gpu_check):
    with pytest.raises(SystemExit):
        gpu_check.main(["--presets", "12GB"])


# ----------------------------------------------------------------------------------------------- overrides, plan
def test_overrides_are_planned_with_a_preset_instance(gpu_check, monkeypatch):
    from loraedit_nb import planner
    from loraedit_nb.bench import WAN_14B_CONFIG

    assert gpu_check.run_overrides("24GB", "adamw") == {"optimizer": "adamw"}
    assert gpu_check.run_overrides("80GB+", "adamw") == {} and gpu_check.run_overrides("24GB", None) == {}
    plain = gpu_check.predict(dict(WAN_14B_CONFIG), *FULL_SIZE, "24GB")
    adamw = gpu_check.predict(dict(WAN_14B_CONFIG), *FULL_SIZE, "24GB", {"optimizer": "adamw"})
    assert plain["for"] == "24GB" and "adamw" in adamw["for"]
    # full AdamW moments take ~0.5 GB more at 14B: more blocks swapped or a higher training peak
    assert (adamw["train_blocks_to_swap"], adamw["stages"]["training"]) != \
        (plain["train_blocks_to_swap"], plain["stages"]["training"])
    assert adamw["train_blocks_to_swap"] >= plain["train_blocks_to_swap"]

    real = planner.plan

    def names_only(config, frames, height, width, memory_preset="24GB", **kw):
        if not isinstance(memory_preset, str):
            raise TypeError("a preset name")
        return real(config, frames, height, width, memory_preset, **kw)
    monkeypatch.setattr(planner, "plan", names_only)
    fallback = gpu_check.predict(dict(WAN_14B_CONFIG), *FULL_SIZE, "24GB", {"optimizer": "adamw"})
    assert "not planned" in fallback["for"] and fallback["stages"] == plain["stages"]


# ----------------------------------------------------------------------------------------------- wheels
def _fake_wheel(folder: Path, name: str = "bitsandbytes", version: str = "0.0.1",
                libs=("cpu", "cuda118", "cuda130", "cuda132", "rocm64", "xpu2025"), lib_bytes: int = 64) -> Path:
    """A small valid wheel with ``libbitsandbytes_<lib>.so`` files of random bytes (for bitsandbytes)."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"VALUE = 1\n",
             **{f"{name}/libbitsandbytes_{x}.so": os.urandom(lib_bytes) for x in libs},
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"}
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
        z.writestr(f"{dist}/RECORD", "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n")
    return path


def test_trimmed_bitsandbytes_wheel_keeps_one_gpu_library_and_installs(gpu_check, tmp_path):
    import base64
    import hashlib

    src = _fake_wheel(tmp_path)
    out = gpu_check.trim_bnb_wheel(src, tmp_path / "trimmed", "cuda130")
    assert out.name == src.name and out.parent == tmp_path / "trimmed"
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        libs = sorted(n.rsplit("/", 1)[-1] for n in names if n.endswith(".so"))
        assert libs == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so"]
        assert names[-1].endswith(".dist-info/RECORD")  # last, as the wheel format recommends
        rows = list(csv.reader(io.StringIO(z.read(names[-1]).decode())))
        assert sorted(r[0] for r in rows) == sorted(names)  # every file, nothing dropped
        for path, digest, size in rows[:-1]:
            data = z.read(path)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (want, len(data)), path
        assert rows[-1] == [names[-1], "", ""]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), str(out)], check=True, timeout=120)
    assert sorted(p.name for p in (target / "bitsandbytes").glob("*.so")) == libs
    (tmp_path / "old").mkdir()
    with pytest.raises(ValueError, match="cuda130"):  # a wheel that would load nothing on that machine
        gpu_check.trim_bnb_wheel(_fake_wheel(tmp_path / "old", libs=("cpu", "cuda128")), tmp_path / "t2", "cuda130")
    assert not list((tmp_path / "t2").iterdir())  # no half-written wheel left behind


def test_choose_wheels_drops_bitsandbytes_only_when_it_does_not_fit(gpu_check):
    mib = 2**20
    limit, margin = gpu_check.TRAVEL_LIMIT, gpu_check.TRAVEL_MARGIN
    # the whole bitsandbytes wheel (43.1 MB) beside a 49 MB tree does not fit; trimmed (~4 MB) it does
    whole = dict(diffusers=6_355_908, ftfy=44_821, wcwidth=785_946, bitsandbytes=43_139_553)
    c = gpu_check.choose_wheels(49_046_550, whole)
    assert c["keep"] == ["diffusers", "ftfy", "wcwidth"] and c["dropped"] == ["bitsandbytes"]
    assert c["total_bytes"] == 49_046_550 + 6_355_908 + 44_821 + 785_946 <= limit - margin
    c = gpu_check.choose_wheels(49_046_550, {**whole, "bitsandbytes": 4_000_000})
    assert c["keep"][-1] == "bitsandbytes" and c["dropped"] == []
    # the boundary: exactly the room left fits, one byte more does not
    room = limit - margin - 10 * mib
    assert gpu_check.choose_wheels(10 * mib, dict(diffusers=room - 5, bitsandbytes=5))["dropped"] == []
    assert gpu_check.choose_wheels(10 * mib, dict(diffusers=room - 5, bitsandbytes=6))["dropped"] == ["bitsandbytes"]
    with pytest.raises(ValueError, match="copy limit"):
        gpu_check.choose_wheels(60 * mib, dict(diffusers=5 * mib))


def _git_repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("/.whl/\n/ignored.bin\n")
    (root / "tracked.txt").write_bytes(b"x" * 100)
    subprocess.run(["git", "-C", str(root), "add", ".gitignore", "tracked.txt"], check=True)
    (root / "untracked.txt").write_bytes(b"y" * 30)
    (root / "ignored.bin").write_bytes(b"z" * 1000)
    return root


def test_travel_bytes_counts_what_the_device_tool_copies(gpu_check, tmp_path):
    root = _git_repo(tmp_path / "repo")
    (root / "shared").mkdir()
    (root / "shared" / "note.md").write_bytes(b"s" * 7)
    (root / "wheels").mkdir()
    (root / "wheels" / "a.whl").write_bytes(b"w" * 500)  # not ignored, but counted with the wheels instead
    tree = (root / ".gitignore").stat().st_size  # tracked; ignored.bin is not counted
    assert gpu_check.travel_bytes(root, root / "wheels") == tree + 100 + 30 + 7
    assert gpu_check.travel_bytes(root) == tree + 100 + 30 + 7 + 500


def test_prepare_wheels_writes_the_set_and_the_command(gpu_check, tmp_path, monkeypatch, capsys):
    """The whole step with pip's download replaced by small fake wheels: the set in the folder, stale wheels gone,
    bitsandbytes trimmed, then left out when the copy would pass the limit."""
    root = _git_repo(tmp_path / "repo")
    monkeypatch.setattr(gpu_check, "ROOT", root)

    def download(name, version, dest):
        return _fake_wheel(dest, name, version, lib_bytes=2_000_000) if name == "bitsandbytes" else \
            _fake_wheel(dest, name, version, libs=())
    monkeypatch.setattr(gpu_check, "download_wheel", download)
    (root / ".whl").mkdir()
    (root / ".whl" / "old-0.1-py3-none-any.whl").write_bytes(b"old")
    rep = gpu_check.prepare_wheels(root / ".whl")
    got = sorted(p.name.split("-")[0] for p in (root / ".whl").glob("*.whl"))
    assert got == ["bitsandbytes", "diffusers", "ftfy", "wcwidth"]
    assert rep["bitsandbytes"] == "trimmed to libbitsandbytes_cuda130" and rep["dropped"] == []
    with zipfile.ZipFile(next((root / ".whl").glob("bitsandbytes-*.whl"))) as z:
        assert not [n for n in z.namelist() if "cuda118" in n or "rocm" in n]
    assert "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site" in rep["command"]
    assert 'carry=[".whl"]' in rep["command"] and len(rep["command"]) < 2000  # the run call's own limit
    out = capsys.readouterr().out
    assert rep["command"] in out and "MiB of 64 MiB" in out and "not ignore" not in out
    # a margin that leaves ~1 MB: the ~2 MB trimmed bitsandbytes is left out, the rest still travels
    rep = gpu_check.prepare_wheels(root / ".whl", margin=gpu_check.TRAVEL_LIMIT - 1_000_000)
    assert rep["dropped"] == ["bitsandbytes"] and "left out" in rep["bitsandbytes"]
    assert sorted(p.name.split("-")[0] for p in (root / ".whl").glob("*.whl")) == ["diffusers", "ftfy", "wcwidth"]
    with pytest.raises(ValueError, match="inside the repository"):
        gpu_check.prepare_wheels(tmp_path / "elsewhere")


def test_the_simulated_peaks_are_recorded_beside_the_measured_ones(gpu_check, tmp_path, monkeypatch):
    """A lent GPU's run also calibrates the simulator: each stage gets the full-size simulation's peak of the
    same preset and clip (results/simulated_memory.json), and says why not where no simulated row applies."""
    from loraedit_nb import simulation

    table = tmp_path / "simulated_memory.json"
    key = simulation.table_key("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "24GB", *FULL_SIZE)
    table.write_text(json.dumps({key: {"simulation": {
        "stages": {"caching": {"gpu": 11.5}, "training": {"gpu": 18.3}, "editing": {"gpu": 18.3}},
        "host_ram_gb": 47.4, "train_blocks_to_swap": 21, "edit_settings": {"blocks_to_swap": 6}}}}))
    monkeypatch.setattr(simulation, "RECORDED", table)
    monkeypatch.setattr(simulation.recorded, "__defaults__", (table,))
    opts = dict(frames=49, height=480, width=832)
    got = gpu_check._simulated("24GB", opts)
    assert got["stages"]["training"] == 18.3 and got["edit_blocks_to_swap"] == 6
    assert "none" in gpu_check._simulated("48GB", opts)
    assert "none" in gpu_check._simulated("24GB", {**opts, "layers": 2})
    rec = {"preset": "24GB", "stages": {}, "plan": {"stages": {"training": 22.0}}, "simulated": got}
    gpu_check._stage(rec, "train", lambda: (None, {}), False, tmp_path / "rec.json")
    assert rec["stages"]["train"]["simulated_gpu_gb"] == 18.3 and rec["stages"]["train"]["predicted_gpu_gb"] == 22.0
