"""One pipeline from pixels to prediction: the user path, `facemtl evaluate` and the training cache agree."""
from __future__ import annotations

import csv
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import DATA, FER2013, UTKFACE, needs_data

from facemtl import FaceAnalyzer
from facemtl.cli.__main__ import main
from facemtl.data.cache import build_cache
from facemtl.data.datasets import FAIRFACE_RACE, extra_targets, load_celeba_gender, load_fairface, load_utkface
from facemtl.errors import CheckpointError, DatasetError, FacemtlError
from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
from facemtl.models.factory import load_checkpoint
from facemtl.preprocess import DEFAULT_FRAMING, center_crop, pad_for_detection
from facemtl.tasks import get_task
from facemtl.train.losses import interval_loss, task_loss

FAIRFACE = DATA / "fairface"
CELEBA = DATA / "celeba_gender"


def _copy_sample(tmp_path, n_utk: int = 120, n_fer_per_class: int = 12):
    """A small UTKFace folder and a FER2013 folder (test/<emotion>/) of real files."""
    utk = tmp_path / "utkface"
    utk.mkdir()
    files = sorted(UTKFACE.glob("*.jpg.chip.jpg"))
    for f in files[:: max(1, len(files) // n_utk)][:n_utk]:
        shutil.copy(f, utk / f.name)
    fer = tmp_path / "fer2013"
    for d in sorted((FER2013 / "test").iterdir()):
        out = fer / "test" / d.name
        out.mkdir(parents=True)
        for f in sorted(d.glob("*.jpg"))[:n_fer_per_class]:
            shutil.copy(f, out / f.name)
    return utk, fer


@needs_data
def test_batch_detector_none_agrees_with_evaluate_per_image(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEMTL_CACHE", str(tmp_path / "cache"))
    utk, fer = _copy_sample(tmp_path)
    out = tmp_path / "batch.csv"
    assert main(["batch", str(utk), str(fer), "--recursive", "--detector", "none", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    report = evaluate(EvaluateConfig(utkface=str(utk), fer2013=str(fer), split="all", keep_samples=True,
                                     bootstrap=0, cache_dir=str(tmp_path / "cache")))
    samples = report["samples"]
    assert len(samples) > 200 and len(rows) == len(samples)
    tasks = [s.name for s in FaceAnalyzer.from_checkpoint(detector="none").tasks]
    n_checked = 0
    for s in samples:
        row = rows[s["path"]]
        assert row["error"] == "" and row["n_faces"] == "1"
        assert abs(float(row["age"]) - s["pred"]["age"]) < 0.02, s["path"]
        for t in tasks:
            if t == "age":
                continue
            probs = s["probs"][t]
            labels = get_task(t).labels
            if row[t] != s["pred"][t]:  # only an exact tie may go either way
                top = sorted(probs, reverse=True)
                assert top[0] - top[1] < 1e-3, (s["path"], t)
            for j, lab in enumerate(labels):
                assert abs(float(row[f"{t}.{lab}"]) - probs[j]) < 2e-3, (s["path"], t, lab)
            n_checked += 1
    assert n_checked >= 3 * len(samples)


@needs_data
def test_photo_crop_equals_training_cache_crop(tmp_path):
    """The crop a photo gets through FaceAnalyzer is, bit for bit, the one the training cache holds."""
    recs = load_utkface(UTKFACE, limit=6).records
    analyzer = FaceAnalyzer.from_checkpoint(largest_only=True)  # the bundled model, the photo path
    cached = build_cache(recs, analyzer.input_size, tmp_path / "cache", geometry=analyzer.geometry,
                         framing=analyzer.framing)  # what `facemtl train` caches for a model of this framing
    assert cached.found.all()
    for i, r in enumerate(recs):
        from facemtl.image import load_image

        photo, _ = pad_for_detection(load_image(r.path), DEFAULT_FRAMING.pad)  # the face inside a larger picture
        _, _, dets, crops, _, exc = analyzer._prepare(photo)
        assert exc is None and len(crops) == 1
        assert np.array_equal(crops[0], center_crop(cached.images[i:i + 1], analyzer.input_size)[0]), r.path
        # and `--detector none` on the dataset image itself gives that crop too
        assert np.array_equal(analyzer.frame_crop(r.path)[0], crops[0])


def test_bundled_model_carries_the_geometry_it_was_trained_with():
    from facemtl.weights import default_checkpoint_path

    _, meta = load_checkpoint(default_checkpoint_path())
    tcfg, pre = meta["train_config"], meta["preprocess"]
    assert pre["crop"] == tcfg["geometry"] and pre["framing"] == tcfg["framing"]
    assert int(pre["input_size"]) == int(tcfg["input_size"])
    analyzer = FaceAnalyzer.from_checkpoint()
    assert analyzer.geometry.to_dict() == tcfg["geometry"] and analyzer.framing.to_dict() == tcfg["framing"]


def test_checkpoint_whose_geometry_contradicts_its_training_is_refused(tmp_path):
    from facemtl.weights import default_checkpoint_path

    ck = torch.load(default_checkpoint_path(), map_location="cpu", weights_only=False)
    ck["preprocess"]["crop"] = {**ck["preprocess"]["crop"], "scale": 1.3}
    bad = tmp_path / "bad.pt"
    torch.save(ck, bad)
    with pytest.raises(CheckpointError, match=r"preprocess.crop contradicts .*scale: stored 1.3"):
        load_checkpoint(bad)
    assert main(["predict", str(bad), "--model", str(bad)]) == 1  # one clear error, no traceback


def test_interval_loss_is_the_mass_inside_the_bin_never_a_midpoint():
    spec = get_task("age")
    raw = torch.randn(3, spec.num_bins)
    lo, hi = torch.tensor([20.0, 70.0, 0.0]), torch.tensor([30.0, math.inf, 3.0])
    got = interval_loss(spec, raw, lo, hi)
    p = raw.softmax(-1)
    centers = torch.from_numpy(spec.bin_centers())
    for i in range(3):
        inside = (centers >= lo[i]) & (centers < hi[i])
        expected_age = float(p[i] @ centers)
        outside = max(0.0, float(lo[i]) - expected_age) + max(0.0, expected_age - (min(float(hi[i]), 101.0) - 1))
        want = -math.log(float(p[i][inside].sum())) + outside / 100.0 * 10.0
        assert float(got[i]) == pytest.approx(want, rel=1e-4, abs=1e-4)
    # all mass inside the bin costs nothing; a point label at the midpoint would not give the same loss
    peaked = torch.full((1, spec.num_bins), -30.0)
    peaked[0, 21] = 30.0
    assert float(interval_loss(spec, peaked, torch.tensor([20.0]), torch.tensor([30.0]))[0]) < 1e-6
    assert float(task_loss(spec, peaked, torch.tensor([25.0]))) > 0.5
    # in a batch, interval-only samples train the age head; NaN points are not NaN losses
    targets = torch.tensor([float("nan"), 40.0])
    loss = task_loss(spec, raw[:2].requires_grad_(), targets, interval=(torch.tensor([20.0, float("nan")]),
                                                                        torch.tensor([30.0, float("nan")])))
    assert torch.isfinite(loss)


@pytest.mark.skipif(not (FAIRFACE / "fairface.zip").is_file(), reason="FairFace not in ../shared/data")
def test_fairface_bins_become_intervals_and_races_map_in_one_place():
    idx = load_fairface(FAIRFACE, limit=200)
    assert len(idx.records) == 200
    r = idx.records[0]
    assert r.member and r.read_bytes()[:2] == b"\xff\xd8"  # read in place from the zip
    assert "age" not in r.labels and r.intervals["age"][0] < r.intervals["age"][1]
    assert {x.labels["ethnicity"] for x in idx.records} <= set(get_task("ethnicity").labels)
    assert all(FAIRFACE_RACE[x.meta["race7"]] == x.labels["ethnicity"] for x in idx.records)
    ex = extra_targets(idx.records)
    assert not np.isnan(ex["age_lo"]).any() and (ex["age_hi"] > ex["age_lo"]).all()


@pytest.mark.skipif(not (CELEBA / "celeba_gender.zip").is_file(), reason="celeba_gender not in ../shared/data")
def test_celeba_gender_reads_its_zip():
    idx = load_celeba_gender(CELEBA, limit=50)
    assert len(idx.records) == 50 and {r.labels["gender"] for r in idx.records} <= {"male", "female"}


def test_bad_sources_and_recipes_get_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="FairFace folder not found"):
        load_fairface(tmp_path / "nope")
    (tmp_path / "ff").mkdir()
    (tmp_path / "ff" / "fairface.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip, no labels.csv
    with pytest.raises(DatasetError, match="has no labels file"):
        load_fairface(tmp_path / "ff")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("utkface: x\nepohcs: 3\n")
    assert main(["train", "--config", str(recipe)]) == 1
    from facemtl.cli._args import load_yaml_config
    from facemtl.train.loop import TrainConfig

    with pytest.raises(FacemtlError, match="'epohcs' \\(did you mean 'epochs'\\?\\)"):
        load_yaml_config(str(recipe), TrainConfig)
    with pytest.raises(FacemtlError, match="augment option"):
        TrainConfig(augment={"blurr_p": 0.5})


@needs_data
def test_ferplus_votes_become_soft_emotion_targets():
    from facemtl.data.datasets import load_fer2013

    idx = load_fer2013(FER2013, limit=60)
    with_votes = [r for r in idx.records if r.soft]
    assert len(with_votes) >= 50
    for r in with_votes:
        v = r.soft["emotion"]
        assert v.shape == (7,) and abs(v.sum() - 1) < 1e-6 and (v >= 0).all()
    assert not any(r.soft for r in load_fer2013(FER2013, limit=10, ferplus=None).records)


def test_validation_in_train_reports_what_evaluate_reports(tmp_path, tiny_dataset):
    from facemtl.train.loop import TrainConfig, train

    cfg = TrainConfig(utkface=str(tiny_dataset.utkface), fer2013=str(tiny_dataset.fer2013), backbone="tiny",
                      pretrained=False, epochs=1, batch_size=4, val_fraction=0.5, out=str(tmp_path / "run"),
                      cache_dir=str(tmp_path / "cache"), seed=3)
    res = train(cfg)
    val = res["history"][-1]
    rep = evaluate(EvaluateConfig(model=res["best"], utkface=cfg.utkface, fer2013=cfg.fer2013, split="val",
                                  bootstrap=0, cache_dir=cfg.cache_dir))
    utk, fer = rep["by_source"]["utkface"], rep["by_source"]["fer2013"]
    assert utk["age"]["n"] == val["val/utkface/age/n"] and fer["emotion"]["n"] == val["val/fer2013/emotion/n"]
    assert utk["age"]["mae"] == pytest.approx(val["val/utkface/age/mae"], abs=1e-3)
    assert utk["gender"]["accuracy"] == pytest.approx(val["val/utkface/gender/accuracy"], abs=1e-6)
    assert fer["emotion"]["accuracy"] == pytest.approx(val["val/fer2013/emotion/accuracy"], abs=1e-6)
    # and the checkpoint records the framing it was trained with
    _, meta = load_checkpoint(res["best"])
    assert meta["preprocess"]["framing"] == meta["train_config"]["framing"] == DEFAULT_FRAMING.to_dict()

    # evaluate took the split from the run's own split.csv (its SHA-256 is the checkpoint's), image by image
    import csv as _csv

    from facemtl.errors import DatasetError

    split_csv = tmp_path / "run" / "split.csv"
    with open(split_csv, newline="") as f:
        rows = list(_csv.DictReader(f))
    n_val = sum(r["split"] in ("val", "test") and r["source"] == "utkface" for r in rows)
    assert utk["age"]["n"] == n_val
    # even when asked for another val fraction (which would re-derive another split from the seed)
    again = evaluate(EvaluateConfig(model=res["best"], utkface=cfg.utkface, split="val", bootstrap=0,
                                    cache_dir=cfg.cache_dir, val_fraction=0.9))
    assert again["by_source"]["utkface"]["age"]["n"] == n_val
    import shutil

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(res["best"], alone / "best.pt")  # no split.csv beside it: the split is re-derived, here differently
    rederived = evaluate(EvaluateConfig(model=str(alone / "best.pt"), utkface=cfg.utkface, split="val", bootstrap=0,
                                        cache_dir=cfg.cache_dir, val_fraction=0.9))
    assert rederived["by_source"]["utkface"]["age"]["n"] != n_val
    # a manifest from another run is refused when named, and ignored (with the seed's split) when found beside it
    other = tmp_path / "other.csv"
    rows[0]["split"] = "val" if rows[0]["split"] == "train" else "train"
    with open(other, "w", newline="") as f:
        w = _csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DatasetError, match="is not the split this checkpoint was trained with"):
        evaluate(EvaluateConfig(model=res["best"], utkface=cfg.utkface, split="val", bootstrap=0,
                                cache_dir=cfg.cache_dir, split_manifest=str(other)))


def test_fine_tuning_with_another_seed_keeps_the_split_through_split_seed(tmp_path, tiny_dataset, caplog):
    """The split follows ``split_seed`` (default: ``seed``); a fine-tuning run that splits otherwise than its
    init_checkpoint's run is warned that its validation part holds images the init model was trained on."""
    from facemtl.data.split import split_seed_of
    from facemtl.train.loop import TrainConfig, train

    def run(name: str, **kw) -> tuple[dict, bytes]:
        cfg = TrainConfig(utkface=str(tiny_dataset.utkface), backbone="tiny", pretrained=False, epochs=1,
                          batch_size=4, val_fraction=0.5, out=str(tmp_path / name), cache_dir=str(tmp_path / "c"),
                          **kw)
        res = train(cfg)
        return res, (tmp_path / name / "split.csv").read_bytes()

    first, split_a = run("a", seed=3)
    caplog.clear()
    with caplog.at_level("WARNING", logger="facemtl.train.loop"):
        kept, split_b = run("b", seed=5, split_seed=3, init_checkpoint=first["best"])
    assert split_b == split_a and "split otherwise" not in caplog.text
    with caplog.at_level("WARNING", logger="facemtl.train.loop"):
        _, split_c = run("c", seed=5, init_checkpoint=first["best"])
    assert split_c != split_a
    assert "split otherwise" in caplog.text and "split_seed 3 -> 5" in caplog.text
    # evaluate re-derives a split from the checkpoint's split seed, not from its sampling seed
    _, meta = load_checkpoint(kept["best"])
    assert split_seed_of(meta["train_config"]) == 3 and meta["train_config"]["seed"] == 5
    assert split_seed_of({"seed": 7}) == 7  # files written before split_seed existed
