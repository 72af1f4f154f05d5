import json

from loraedit_nb import bench


def test_bench_smoke_writes_the_fields(tmp_path, capsys):
    bench.main(["--quick", "--json", str(tmp_path / "b.json")])
    rows = json.loads((tmp_path / "b.json").read_text())
    train = [r for r in rows if r["stage"] == "train_step"]
    assert {r["cached"] for r in train} == {True, False}
    for r in train:
        assert r["s_per_step"] > 0 and r["peak_rss_mb"] > 50
    inf = [r for r in rows if r["stage"] == "inference"]
    assert inf and inf[0]["denoise_s_per_step"] > 0 and inf[0]["decode_s"] >= 0
    assert "caching speed-up" in capsys.readouterr().out
