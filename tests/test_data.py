"""Dataset adapters (UTKFace names, FER2013 folders and CSV, manifests), deduplication, the split, the crop
cache and the batch transforms."""
from __future__ import annotations

import csv
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FER2013, UTKFACE, draw_face, needs_data
from PIL import Image

from facemtl.data.cache import build_cache, decode_record
from facemtl.data.datasets import (
    FER2013_EMOTIONS,
    UTKFACE_GENDER,
    UTKFACE_RACE,
    DatasetIndex,
    Record,
    deduplicate,
    load_fer2013,
    load_manifest,
    load_utkface,
)
from facemtl.data.split import make_split, read_split_manifest, write_split_manifest
from facemtl.data.transforms import AugmentConfig, augment_batch, resize_batch
from facemtl.errors import DatasetError
from facemtl.preprocess import DEFAULT_FRAMING, center_crop, context_size
from facemtl.tasks import get_task, list_tasks

MALFORMED = ["39_1_20170116174525125.jpg.chip.jpg",  # missing race
             "24_0_1_2017 .jpg.chip.jpg",  # a space before .jpg
             "55_0_0_20170116232725357jpg.chip.jpg"]  # missing dot


# -- UTKFace --------------------------------------------------------------------------------------------------

def test_utkface_labels_from_names(tiny_dataset):
    idx = load_utkface(tiny_dataset.utkface)
    assert len(idx) == len(tiny_dataset.utk_labels) and not idx.skipped
    for r in idx.records:
        age, gender, race = tiny_dataset.utk_labels[Path(r.path).name]
        assert r.source == "utkface" and r.split is None and Path(r.path).is_file()
        assert r.labels == {"age": float(age), "gender": UTKFACE_GENDER[gender], "ethnicity": UTKFACE_RACE[race]}
        t = r.target_indices()
        assert t["age"] == age and t["gender"] == gender and t["ethnicity"] == race
        assert t["emotion"] == -1  # UTKFace has no emotion label
    assert {r.labels["gender"] for r in idx.records} == {"male", "female"}
    assert {r.labels["ethnicity"] for r in idx.records} == set(get_task("ethnicity").labels)


def test_utkface_malformed_names_are_skipped_and_counted(tiny_dataset, caplog):
    src = next(tiny_dataset.utkface.iterdir())
    for name in MALFORMED:
        shutil.copyfile(src, tiny_dataset.utkface / name)
    (tiny_dataset.utkface / "README.txt").write_text("not an image")  # ignored: not an image extension
    idx = load_utkface(tiny_dataset.utkface)
    assert len(idx) == len(tiny_dataset.utk_labels)
    assert idx.skipped == Counter({"malformed name": len(MALFORMED)})
    assert not any(Path(r.path).name in MALFORMED for r in idx.records)
    assert "malformed" in caplog.text


def test_utkface_limit(tiny_dataset):
    assert len(load_utkface(tiny_dataset.utkface, limit=3)) == 3


def test_missing_or_empty_folders_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        load_utkface(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="nowhere"):
        load_fer2013(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_utkface(tmp_path / "empty")
    with pytest.raises(DatasetError, match="train"):
        load_fer2013(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="folder"):
        load_utkface(tmp_path / "file.txt")


@needs_data
def test_real_utkface_labels():
    idx = load_utkface(UTKFACE, limit=200)
    assert len(idx) == 200
    for r in idx.records:
        age, gender, race = Path(r.path).name.split("_")[:3]
        assert r.labels["age"] == float(age) and 1 <= r.labels["age"] <= 116
        assert r.labels["gender"] == UTKFACE_GENDER[int(gender)]
        assert r.labels["ethnicity"] == UTKFACE_RACE[int(race)]


# -- FER2013 --------------------------------------------------------------------------------------------------

def test_fer_folder_layout(tiny_dataset):
    idx = load_fer2013(tiny_dataset.fer2013)
    by = Counter((r.split, r.labels["emotion"]) for r in idx.records)
    assert by == Counter({("train", "happy"): 1, ("train", "sad"): 1, ("train", "angry"): 1,
                          ("val", "happy"): 1, ("val", "sad"): 1})  # test/ is PublicTest -> "val"
    assert all(r.source == "fer2013" and r.target_indices()["age"] != r.target_indices()["age"]  # NaN age
               for r in idx.records)


def test_fer_unknown_emotion_folder_is_skipped(tiny_dataset):
    (tiny_dataset.fer2013 / "train" / "contempt").mkdir()
    idx = load_fer2013(tiny_dataset.fer2013)
    assert idx.skipped == Counter({"unknown emotion folder contempt": 1})
    assert len(idx) == 5


@needs_data
def test_real_fer_folder_with_limit():
    idx = load_fer2013(FER2013, limit=70)
    assert len(idx) == 70
    splits = Counter(r.split for r in idx.records)
    assert splits == Counter({"train": 35, "val": 35})
    emotions = {r.labels["emotion"] for r in idx.records}
    assert len(emotions) >= 6 and emotions <= set(FER2013_EMOTIONS.values())
    for r in idx.records:
        assert Path(r.path).parent.name == r.labels["emotion"]
        assert Path(r.path).name.startswith("Training_" if r.split == "train" else "PublicTest_")


def _write_fer_csv(path: Path, rows: list[list[str]], header=("emotion", "pixels", "Usage")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_fer_csv_layout_and_bad_rows(tmp_path):
    imgs = [draw_face(48, seed=i)[:, :, 0] for i in range(3)]
    px = [" ".join(map(str, im.ravel())) for im in imgs]
    path = _write_fer_csv(tmp_path / "fer2013.csv", [
        ["3", px[0], "Training"],
        ["0", px[1], "PublicTest"],
        ["6", px[2], "PrivateTest"],
        ["9", px[0], "Training"],  # emotion code out of range
        ["2", "1 2 3", "Training"],  # not a square image
        ["2", px[0].replace(" ", " 300 ", 1), "Training"],  # a pixel above 255 (and not square)
        ["2", "300 " + px[0].split(" ", 1)[1], "Training"],  # a pixel above 255, right count
        ["x", px[0], "Training"],  # not a number
        ["4"],  # truncated row
    ])
    idx = load_fer2013(path)
    assert len(idx) == 3
    assert idx.skipped == Counter({"bad csv row": 6})
    assert [r.labels["emotion"] for r in idx.records] == ["happy", "angry", "neutral"]
    assert [r.split for r in idx.records] == ["train", "val", "test"]
    for r, im in zip(idx.records, imgs):
        assert r.path is None and r.pixels.shape == (48, 48) and np.array_equal(r.pixels, im)
    assert load_fer2013(path, limit=2).records[-1].labels["emotion"] == "angry"
    # each record has its own key (no path): they must not collide
    for r in idx.records:
        r.compute_digest()
    assert len({r.key for r in idx.records}) == 3


def test_fer_csv_missing_columns(tmp_path):
    path = _write_fer_csv(tmp_path / "x.csv", [["3", "1 2"]], header=("label", "pixels"))
    with pytest.raises(DatasetError, match="emotion"):
        load_fer2013(path)
    path = _write_fer_csv(tmp_path / "y.csv", [["9", "1 2", "Training"]])
    with pytest.raises(DatasetError, match="no usable rows"):
        load_fer2013(path)


@needs_data
def test_fer_csv_built_from_real_images(tmp_path):
    files = [sorted((FER2013 / "train" / e).iterdir())[0] for e in ("angry", "happy", "surprise")]
    arrays = []
    for f in files:
        with Image.open(f) as im:
            arrays.append(np.asarray(im.convert("L")))
    rows = [[str(k), " ".join(map(str, a.ravel())), "Training"] for k, a in zip((0, 3, 5), arrays)]
    idx = load_fer2013(_write_fer_csv(tmp_path / "fer2013.csv", rows))
    assert [r.labels["emotion"] for r in idx.records] == ["angry", "happy", "surprise"]
    for r, a, f in zip(idx.records, arrays, files):
        assert np.array_equal(r.pixels, a)
        # the same crop from the CSV pixels and from the JPEG
        assert np.array_equal(decode_record(r, 48)[0], decode_record(Record("fer2013", path=str(f)), 48)[0])


# -- manifests ------------------------------------------------------------------------------------------------

def _manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest_relative_paths_and_labels(tiny_dataset):
    names = sorted(tiny_dataset.utk_labels)
    path = _manifest(tiny_dataset.root / "m.csv", ["path", "age", "gender", "emotion", "split", "source"], [
        [f"utkface/{names[0]}", "31.5", "Female", "", "val", "mine"],
        [str(tiny_dataset.utkface / names[1]), "", "", "happy", "", ""],
    ])
    idx = load_manifest(path)
    a, b = idx.records
    assert Path(a.path) == tiny_dataset.utkface / names[0] and Path(a.path).is_file()
    assert a.labels == {"age": 31.5, "gender": "female"} and a.split == "val" and a.source == "mine"
    assert b.labels == {"emotion": "happy"} and b.split is None and b.source == "manifest"
    assert b.target_indices()["gender"] == -1 and math.isnan(b.target_indices()["age"])


@pytest.mark.parametrize("header, row, match", [
    (["path", "gender", "mood"], ["a.jpg", "male", "x"], "mood"),
    (["file", "gender"], ["a.jpg", "male"], "path"),
    (["path", "gender"], ["a.jpg", "robot"], "robot"),
    (["path", "age"], ["a.jpg", "old"], "old"),
    (["path", "split"], ["a.jpg", "holdout"], "holdout"),
])
def test_manifest_errors_name_the_problem(tmp_path, header, row, match):
    with pytest.raises(DatasetError, match=match):
        load_manifest(_manifest(tmp_path / "m.csv", header, [row]))


def test_manifest_unknown_label_lists_the_valid_ones(tmp_path):
    with pytest.raises(DatasetError, match="robot") as exc:
        load_manifest(_manifest(tmp_path / "m.csv", ["path", "gender"], [["a.jpg", "male"], ["b.jpg", "robot"]]))
    assert "line 3" in str(exc.value) and "female" in str(exc.value) and "male" in str(exc.value)


def test_manifest_missing_or_empty(tmp_path):
    with pytest.raises(DatasetError, match="nope.csv"):
        load_manifest(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="no rows"):
        load_manifest(_manifest(tmp_path / "m.csv", ["path", "age"], []))


# -- deduplication and the split ------------------------------------------------------------------------------

def test_deduplicate_identical_bytes(tiny_dataset):
    names = sorted(tiny_dataset.utk_labels)
    d = tiny_dataset.utkface
    # same bytes, same labels under another name -> one kept
    a = names[0]
    shutil.copyfile(d / a, d / a.replace("2017", "2018", 1))
    # same bytes, conflicting labels -> all copies dropped
    b = names[1]
    age, gender, race = tiny_dataset.utk_labels[b]
    shutil.copyfile(d / b, d / f"{age + 1}_{gender}_{race}_20190101000000000.jpg.chip.jpg")
    idx = load_utkface(d)
    assert len(idx) == 10
    out = deduplicate(idx)
    assert out.skipped == Counter({"duplicate": 1, "duplicate with conflicting labels": 2})
    assert len(out) == 7
    digests = [r.digest for r in out.records]
    assert len(set(digests)) == len(digests) and all(len(x) == 40 for x in digests)
    assert not any(Path(r.path).name.split("_")[3].startswith("2019") or Path(r.path).name == b
                   for r in out.records)


def test_deduplicate_keeps_the_held_out_copy(tiny_dataset):
    idx = load_fer2013(tiny_dataset.fer2013)
    happy_val = next(r for r in idx.records if r.split == "val" and r.labels["emotion"] == "happy")
    copy = tiny_dataset.fer2013 / "train" / "happy" / "Training_dup.jpg"
    shutil.copyfile(happy_val.path, copy)
    out = deduplicate(load_fer2013(tiny_dataset.fer2013))
    kept = [r for r in out.records if r.digest == Record("x", path=str(copy)).compute_digest()]
    assert len(kept) == 1 and kept[0].split == "val"
    assert out.skipped["duplicate"] == 1


def _labelled_index(n_per: int = 10) -> DatasetIndex:
    recs = []
    for k, (gender, eth) in enumerate([("male", "white"), ("female", "white"), ("male", "asian")]):
        for i in range(n_per):
            recs.append(Record("utkface", path=f"/fake/{k}_{i}.jpg", digest=f"{k:02d}{i:038d}",
                               labels={"age": 25.0, "gender": gender, "ethnicity": eth}))
    for i in range(6):
        recs.append(Record("fer2013", path=f"/fake/fer_{i}.jpg", digest=f"f{i:039d}", labels={"emotion": "sad"},
                           split="val" if i < 2 else "train"))
    return DatasetIndex(recs)


def _splits(index: DatasetIndex) -> dict[str, str]:
    return {r.key: r.split for r in index.records}


def test_make_split_is_deterministic_and_stratified():
    a, b, c = _labelled_index(), _labelled_index(), _labelled_index()
    make_split(a, val_fraction=0.2, seed=3)
    make_split(b, val_fraction=0.2, seed=3)
    make_split(c, val_fraction=0.2, seed=4)
    assert _splits(a) == _splits(b)
    assert _splits(a) != _splits(c)
    # every stratum gets exactly 20% of its 10 records
    per = Counter((r.labels.get("gender"), r.labels.get("ethnicity")) for r in a.records
                  if r.source == "utkface" and r.split == "val")
    assert per == Counter({("male", "white"): 2, ("female", "white"): 2, ("male", "asian"): 2})
    # FER2013's fixed splits are kept
    assert [r.split for r in a.records if r.source == "fer2013"] == ["val", "val"] + ["train"] * 4


def test_make_split_does_not_depend_on_input_order():
    a, b = _labelled_index(), _labelled_index()
    b.records.reverse()
    make_split(a, 0.3, seed=0)
    make_split(b, 0.3, seed=0)
    assert _splits(a) == _splits(b)


def test_make_split_rejects_bad_fractions():
    for f in (-0.1, 1.0):
        with pytest.raises(ValueError, match="val_fraction"):
            make_split(_labelled_index(), f)


def test_write_split_manifest(tmp_path):
    idx = _labelled_index()
    make_split(idx, 0.2, seed=0)
    out = tmp_path / "runs" / "split.csv"
    sha = write_split_manifest(idx.records, out)
    assert len(sha) == 64
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(idx.records)
    assert list(rows[0]) == ["path", "source", "split", "sha1", *list_tasks()]
    row = next(r for r in rows if r["path"] == "/fake/0_0.jpg")
    assert row["age"] == "25.0" and row["gender"] == "male" and row["emotion"] == ""
    assert read_split_manifest(out) == {r.digest: r.split for r in idx.records}
    # the same records in another order give the same file
    assert write_split_manifest(list(reversed(idx.records)), tmp_path / "again.csv") == sha


# -- the crop cache and batch transforms ----------------------------------------------------------------------

def test_build_cache_shapes_reuse_and_unreadable(tiny_dataset, tmp_path):
    recs = load_utkface(tiny_dataset.utkface).records
    bad = tiny_dataset.root / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    recs.append(Record("utkface", path=str(bad)))
    cache = tmp_path / "cache"
    c = build_cache(recs, 32, cache)
    imgs, ok = c.images, c.ok
    side = context_size(32, DEFAULT_FRAMING.context)
    assert imgs.shape == (9, side, side, 3) and imgs.dtype == np.uint8
    assert ok.tolist() == [True] * 8 + [False]
    assert np.array_equal(imgs[0], decode_record(recs[0], 32, with_context=True)[0])
    assert np.array_equal(center_crop(imgs[:1], 32)[0], decode_record(recs[0], 32)[0])  # context -> canonical
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and not any(".tmp" in f for f in files)
    mtimes = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    c2 = build_cache(recs, 32, cache)  # reused, not rebuilt
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes
    assert np.array_equal(c2.images, imgs) and np.array_equal(c2.ok, ok) and np.array_equal(c2.found, c.found)
    build_cache(recs[:4], 32, cache)  # other records: another file
    assert len(list(cache.iterdir())) == 4


def test_grayscale_source_gives_three_equal_channels(tiny_dataset, tmp_path):
    recs = load_fer2013(tiny_dataset.fer2013).records
    c = build_cache(recs, 48, tmp_path / "cache")
    imgs, ok = c.images, c.ok
    side = context_size(48, DEFAULT_FRAMING.context)
    assert ok.all() and imgs.shape == (5, side, side, 3)
    assert (imgs == imgs[..., :1]).all()
    x = torch.from_numpy(np.array(imgs)).permute(0, 3, 1, 2)  # the cache is a read-only memory map
    geo_only = AugmentConfig.off(rotation_deg=15.0, shift=0.06, zoom=0.1, hflip=True)
    out = augment_batch(x, 64, geo_only, torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 64, 64) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], out[:, 1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 1], out[:, 2], rtol=0, atol=1e-6)


def test_augment_batch_shapes_ranges_and_seed():
    x = torch.from_numpy(np.stack([draw_face(80, seed=i) for i in range(4)])).permute(0, 3, 1, 2)
    cfg = AugmentConfig(brightness=0.5, contrast=0.5)
    a = augment_batch(x, 64, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, 64, cfg, torch.Generator().manual_seed(1))
    c = augment_batch(x, 64, cfg, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 64, 64) and a.min() >= 0.0 and a.max() <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert x.dtype == torch.uint8  # the input is not modified in place
    # nothing to do: identity geometry and colour gives the resized image back
    none = AugmentConfig.off()
    same = augment_batch(x, 80, none)
    torch.testing.assert_close(same, x.float() / 255.0, rtol=0, atol=1e-5)
    # a context crop (the training cache's) at identity gives exactly its centre: the canonical crop
    ctx = torch.randint(0, 256, (2, 3, 140, 140), dtype=torch.uint8)
    centre = augment_batch(ctx, 112, none, context=1.25)
    torch.testing.assert_close(centre, ctx[:, :, 14:126, 14:126].float() / 255.0, rtol=0, atol=1e-4)
    # every photometric step stays in range and changes something
    for step in ("blur_p", "sharpen_p", "lowres_p", "jpeg_p", "noise_p", "occlusion_p", "sepia_p", "shading_p"):
        one = AugmentConfig.off(**{step: 1.0})
        out = augment_batch(x, 80, one, torch.Generator().manual_seed(0))
        assert out.min() >= 0.0 and out.max() <= 1.0, step
        assert (out - x.float() / 255.0).abs().mean() > 1e-3, step
    # a large source is shrunk without error
    big = torch.randint(0, 256, (2, 3, 300, 300), dtype=torch.uint8)
    assert augment_batch(big, 32, cfg).shape == (2, 3, 32, 32)


def test_resize_batch():
    x = torch.randint(0, 256, (3, 3, 48, 48), dtype=torch.uint8)
    up = resize_batch(x, 64)
    assert up.shape == (3, 3, 64, 64) and up.dtype == torch.float32 and 0.0 <= up.min() and up.max() <= 1.0
    same = resize_batch(x, 48)
    torch.testing.assert_close(same, x.float() / 255.0)
    down = resize_batch(torch.full((1, 3, 100, 100), 255, dtype=torch.uint8), 32)
    torch.testing.assert_close(down, torch.ones(1, 3, 32, 32))
