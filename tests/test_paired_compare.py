"""scripts/paired_compare.py: B - A per source and figure, with a paired bootstrap interval."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from paired_compare import compare, main  # noqa: E402


def _report(path: Path, gender_right: np.ndarray, age_error: np.ndarray, bin_hit: np.ndarray) -> Path:
    samples = []
    for i, (g, e) in enumerate(zip(gender_right, age_error)):
        samples.append({"key": f"u{i}", "source": "utkface", "true": {"gender": "male", "age": 30.0},
                        "pred": {"gender": "male" if g else "female", "age": 30.0 + float(e)},
                        "true_interval": {}, "true_majority": {}})
    for i, hit in enumerate(bin_hit):
        samples.append({"key": f"f{i}", "source": "fairface", "true": {"age": None},
                        "pred": {"age": 75.0 if hit else 65.0}, "true_interval": {"age": [70.0, None]}})
    path.write_text(json.dumps({"samples": samples}))
    return path


def test_a_clear_gain_a_clear_loss_and_no_difference(tmp_path, capsys):
    rng = np.random.default_rng(0)
    right = rng.random(400) < 0.8
    err = rng.uniform(0, 8, 400)
    hits = rng.random(200) < 0.5
    a = _report(tmp_path / "a.json", right, err, hits)
    better = right | (rng.random(400) < 0.5)  # B gets right whatever A got right, and more
    b = _report(tmp_path / "b.json", better, err + 1.0, hits)  # and every age a year further off
    by_key = [{s["key"]: s for s in json.loads(p.read_text())["samples"]} for p in (a, b)]
    rows = {(r["source"], r["figure"]): r for r in compare(*by_key, resamples=300)}
    g = rows[("utkface", "gender accuracy")]
    assert g["verdict"] == "B better" and g["diff"] == pytest.approx(better.mean() - right.mean())
    assert g["ci"][0] > 0
    assert rows[("utkface", "age MAE")]["verdict"] == "B worse"  # lower is better for MAE
    assert rows[("utkface", "age MAE")]["diff"] == pytest.approx(1.0)
    f = rows[("fairface", "age inside the labelled bin")]  # the open "70+" bin (null upper end) counts
    assert f["a"] == pytest.approx(hits.mean()) and f["verdict"] == "no clear difference" and f["ci"] == [0, 0]
    assert main([str(a), str(b), "--resamples", "50"]) == 0
    assert "| utkface | gender accuracy | 400 |" in capsys.readouterr().out


def test_reports_without_samples_or_without_shared_images_are_refused(tmp_path, capsys):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(SystemExit, match="--keep-samples"):
        main([str(plain), str(plain)])
    with pytest.raises(SystemExit, match="not found"):
        main([str(tmp_path / "missing.json"), str(plain)])
    a = _report(tmp_path / "a.json", np.ones(3, bool), np.zeros(3), np.ones(2, bool))
    other = json.loads(a.read_text())
    for s in other["samples"]:
        s["key"] = "other/" + s["key"]
    (tmp_path / "o.json").write_text(json.dumps(other))
    assert main([str(a), str(tmp_path / "o.json")]) == 2
    assert "share no image" in capsys.readouterr().err
