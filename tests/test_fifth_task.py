"""A fifth task is one registration: a toy "glasses" task (classification, "no"/"yes") registered in the task
registry is trained, evaluated, drawn, tabled and served like the four real ones, with no other code naming it.

The task is registered for this module only (:func:`facemtl.tasks.registered`) and removed afterwards.
"""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from conftest import FakeDetector, draw_face
from PIL import Image, ImageDraw

from facemtl.tasks import TaskSpec, get_task, list_tasks, registered

GLASSES = TaskSpec("glasses", "classification", labels=("no", "yes"), display=("No glasses", "Glasses"),
                   loss_weight=1.0, head_hidden=(32,), head_dropout=0.0)
FOUR = ["age", "gender", "emotion", "ethnicity"]


def _face(seed: int, glasses: bool, size: int = 64) -> np.ndarray:
    """A drawn face; with glasses, a dark bar across the eyes (what the toy task learns to see)."""
    img = Image.fromarray(draw_face(size, seed=seed, tone=120 + 7 * (seed % 10)))
    if glasses:
        s = size / 64
        ImageDraw.Draw(img).rectangle([16 * s, 20 * s, 48 * s, 29 * s], fill=(10, 10, 10))
    return np.asarray(img)


@pytest.fixture(scope="module")
def glasses():
    """The toy task, registered after the four (head and output order) while the module's tests run."""
    with registered(GLASSES) as spec:
        yield spec
    assert "glasses" not in list_tasks()


@pytest.fixture(scope="module")
def trained(glasses, tmp_path_factory):
    """A tiny model with all five heads, trained for two epochs on synthetic faces labelled for every task."""
    from facemtl.train.data import SourceData
    from facemtl.train.loop import TrainConfig, train

    root = tmp_path_factory.mktemp("glasses_run")
    rng = np.random.default_rng(0)
    n = 32
    wear = np.arange(n) % 2 == 1
    images = np.stack([np.asarray(Image.fromarray(_face(i, bool(w))).resize((32, 32))) for i, w in enumerate(wear)])
    src = SourceData("synthetic", images, {
        "age": torch.tensor(rng.uniform(1, 90, n), dtype=torch.float32),
        "gender": torch.tensor(rng.integers(0, 2, n), dtype=torch.float32),
        "emotion": torch.full((n,), -1.0),
        "ethnicity": torch.tensor(rng.integers(0, 5, n), dtype=torch.float32),
        "glasses": torch.tensor(wear, dtype=torch.float32)},
        np.array(["train"] * (n - 8) + ["val"] * 8))
    torch.manual_seed(0)
    cfg = TrainConfig(backbone="tiny", pretrained=False, input_size=32, batch_size=8, epochs=2, lr=1e-2,
                      warmup_epochs=0.0, out=str(root / "run"), tasks=tuple(list_tasks()))
    res = train(cfg, [src])
    return {"result": res, "root": root}


def test_one_registration_puts_it_everywhere(glasses):
    from facemtl._rows import column_types
    from facemtl.evaluate.metrics import compute_task_metrics
    from facemtl.train.config import TrainConfig

    assert list_tasks() == [*FOUR, "glasses"] and get_task("glasses") is glasses
    # its report metrics, headline and captions come from the kind
    assert glasses.metrics[:3] == ("accuracy", "balanced_accuracy", "macro_f1") and glasses.headline == "accuracy"
    assert TaskSpec.from_dict(glasses.to_dict()) == glasses
    cols = column_types()
    assert [c for c in cols if c.startswith("glasses")] == ["glasses", "glasses_prob", "glasses.no", "glasses.yes"]
    assert list(cols)[-3:] == ["quality", "quality_reasons", "error"]
    r = compute_task_metrics(glasses, [0, 1, 1, -1], [0, 1, 0, 1])
    assert r["positive_label"] == "yes" and r["accuracy"] == pytest.approx(2 / 3) and r["recall"] == 0.5
    TrainConfig(backbone="tiny", pretrained=False, tasks=("glasses",))  # a valid task for training


def test_train_validates_selects_and_stores_it(trained):
    from facemtl.models import load_checkpoint
    from facemtl.train.loop import selection_score

    hist = trained["result"]["history"]
    assert len(hist) == 2 and np.isfinite(hist[-1]["train_loss/glasses"])
    model, meta = load_checkpoint(trained["result"]["best"])
    assert [t.name for t in model.tasks] == [*FOUR, "glasses"]
    assert model.tasks[-1] == get_task("glasses")  # the stored spec is the registered one
    val = meta["val_metrics"]
    assert 0.0 <= val["synthetic/glasses/accuracy"] <= 1.0 and val["synthetic/glasses/n"] == 8
    # its headline counts in model selection like the other accuracies: one more term in the source's mean
    without = {k: v for k, v in val.items() if "/glasses/" not in k}
    terms = 3  # age MAE, gender and ethnicity accuracy (no emotion labels)
    assert selection_score(val) == pytest.approx(
        (selection_score(without) * terms + val["synthetic/glasses/accuracy"]) / (terms + 1))


def _manifest(root, n: int = 24):
    """Images on disk and a manifest CSV with the toy task's column beside age and gender."""
    rng = np.random.default_rng(1)
    folder = root / "images"
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        wear = i % 2 == 1
        Image.fromarray(_face(100 + i, wear)).save(folder / f"f{i:03d}.jpg", quality=92)
        rows.append({"path": f"images/f{i:03d}.jpg", "age": f"{rng.uniform(2, 85):.0f}",
                     "gender": ("male", "female")[i % 4 // 2], "glasses": "yes" if wear else "no"})
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "age", "gender", "glasses"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_evaluate_reports_metrics_fairness_and_report_pages(trained):
    from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
    from facemtl.report.html import render_html
    from facemtl.report.text import format_fairness, format_metrics

    manifest = _manifest(trained["root"])
    rep = evaluate(EvaluateConfig(model=str(trained["result"]["best"]), manifest=(str(manifest),), split="all",
                                  bootstrap=10, fairness_min_count=1, keep_samples=True, batch_size=8))
    m = rep["metrics"]["glasses"]
    assert m["n"] == 24 and m["kind"] == "classification" and m["positive_label"] == "yes"
    assert m["confusion_matrix"]["labels"] == ["no", "yes"] and sum(map(sum, m["confusion_matrix"]["matrix"])) == 24
    assert {"accuracy", "balanced_accuracy", "macro_f1", "precision", "recall", "f1", "ece", "nll"} <= set(m)
    assert rep["metrics"]["emotion"]["n"] == 0  # no emotion column: skipped, as for any task without labels
    fair = rep["fairness"]["tasks"]["glasses"]
    assert fair["metric"] == "accuracy" and fair["higher_is_better"] is True and fair["n"] == 24
    assert {r["grouping"] for r in fair["rows"]} >= {"gender", "age_band", "gender x age_band"}
    assert all(s["true"]["glasses"] in ("no", "yes") for s in rep["samples"])
    assert "glasses (n=24)" in format_metrics(rep["metrics"])
    assert "== glasses: accuracy" in format_fairness(rep["fairness"])
    page = render_html(rep)
    assert 'data-task="glasses"' in page and "<h3>glasses</h3>" in page


@pytest.fixture(scope="module")
def analyzer(trained):
    from facemtl.analyzer import FaceAnalyzer
    from facemtl.detect.base import Detection
    from facemtl.results import Box

    det = FakeDetector([Detection(Box(4.0, 4.0, 60.0, 60.0), 0.99, None)])
    return FaceAnalyzer.from_checkpoint(str(trained["result"]["best"]), detector=det, flip_tta=False,
                                        keep_image=True)


def test_draw_text_table_and_video_show_it(analyzer):
    from facemtl._draw import face_caption
    from facemtl._rows import csv_rows
    from facemtl.cli.predict import _row
    from facemtl.video.smoothing import AttributeSmoother

    res = analyzer(_face(7, True))
    face = res.faces[0]
    pred = face["glasses"]
    assert pred.label in ("no", "yes") and set(pred.probs) == {"no", "yes"}
    assert list(face.attributes) == [*FOUR, "glasses"]
    lines = face_caption(face)
    assert lines[0].startswith("age ") and lines[-1] == f"{pred.label} {pred.value:.0%}"  # the kind's caption
    assert face_caption(face, short=True)[0].endswith(f" {pred.label}")
    drawn = res.plot()
    assert drawn.shape == (64, 64, 3) and not np.array_equal(drawn, res.image)
    assert f"glasses={pred.label} ({pred.value:.0%})" in _row(face)
    row = csv_rows(res)[0]
    assert row["glasses"] == pred.label and row["glasses.yes"] == round(pred.probs["yes"], 4)
    assert res.to_dict()["faces"][0]["glasses"]["label"] == pred.label
    smoothed = AttributeSmoother(analyzer.tasks).update(1, face.attributes)
    assert smoothed["glasses"].label == pred.label


def test_serve_lists_and_answers_it(analyzer):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient

    from facemtl.serve.app import create_app

    client = TestClient(create_app(analyzer))
    info = client.get("/info").json()
    tasks = {t["name"]: t for t in info["tasks"]}
    assert tasks["glasses"] == {"name": "glasses", "kind": "classification", "labels": ["no", "yes"]}
    buf = io.BytesIO()
    Image.fromarray(_face(3, True)).save(buf, format="PNG")
    r = client.post("/predict", files={"file": ("g.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    face = r.json()["faces"][0]
    assert face["glasses"]["label"] in ("no", "yes") and set(face["glasses"]["probs"]) == {"no", "yes"}
    only = client.post("/predict?tasks=glasses", files={"file": ("g.png", buf.getvalue(), "image/png")}).json()
    assert "glasses" in only["faces"][0] and not {"age", "gender"} & set(only["faces"][0])
    assert "glasses" in client.get("/openapi.json").json()["info"]["description"]


def test_a_regression_task_takes_its_groups_units_and_columns_from_its_spec():
    """A toy regression task with a label grouping: decoded with its group as label, tabled, scored, captioned."""
    from facemtl._draw import face_caption
    from facemtl._rows import column_types
    from facemtl.analyzer import decode_outputs
    from facemtl.evaluate.metrics import compute_task_metrics
    from facemtl.results import Box, Face

    tilt = TaskSpec("tilt", "regression", value_range=(0.0, 40.0), num_bins=41, unit="degrees", unit_short="deg",
                    groupings=(("tilt_group", (("small", 0.0), ("large", 20.0))),), label_grouping="tilt_group")
    with registered(tilt):
        raw = np.full((2, 41), -50.0, dtype=np.float32)
        raw[0, 5], raw[1, 30] = 0.0, 0.0  # all mass on 5 and on 30 degrees
        a, b = (p["tilt"] for p in decode_outputs([tilt], {"tilt": raw}))
        assert (a.label, round(a.value), b.label, round(b.value)) == ("small", 5, "large", 30)
        assert set(a.probs) == {"small", "large"} and a.low is None  # no interval: interval=False
        assert [c for c in column_types() if c.startswith("tilt")] == ["tilt", "tilt_group"]
        r = compute_task_metrics(tilt, [4.0, 25.0, 31.0], [5.0, 18.0, 30.0])
        assert r["mae"] == pytest.approx(3.0) and r["tilt_group_accuracy"] == pytest.approx(2 / 3)
        assert list(r["mae_by_group"]) == ["small", "large"] and "mae_by_band" not in r
        assert face_caption(Face(Box(0, 0, 9, 9), 1.0, {"tilt": b})) == ["tilt 30"]
    assert "tilt" not in list_tasks()


def test_a_spec_stored_before_the_new_fields_reads_as_the_registered_task():
    """Checkpoints and ONNX files written before the evaluation and presentation fields existed keep their head
    structure and take the rest from the registry (the bundled model reports exactly what it did)."""
    for name in FOUR:
        new = get_task(name).to_dict()
        old = {k: new[k] for k in ("name", "kind", "labels", "value_range", "num_bins", "loss_weight", "display",
                                   "head_hidden", "head_dropout", "head_batchnorm")}
        old.update(metrics=["accuracy"], sensitive=False)  # then descriptive only
        assert TaskSpec.from_dict(old) == get_task(name)
    smile = {"name": "smile", "kind": "classification", "labels": ["no", "yes"], "metrics": ["accuracy", "f1"]}
    spec = TaskSpec.from_dict(smile)
    assert spec.summary == ("accuracy", "f1") and "balanced_accuracy" in spec.metrics and spec.headline == "accuracy"
