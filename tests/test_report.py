"""The HTML evaluation report: sections, SVG charts, tables, JSON/CSV outputs, notes, escaping, CLI flag."""
from __future__ import annotations

import copy
import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import UTK_LABELS, draw_face
from PIL import Image

from facemtl.cli.__main__ import main
from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
from facemtl.evaluate.report import write_report

SECTIONS = ("data", "metrics", "confusion", "age", "calibration", "fairness", "gallery")


class _Doc(HTMLParser):
    """Collects tags, section ids, svg classes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self, tag: str) -> set[str]:
        return {a.get("id") for t, a in self.tags if t == tag and a.get("id")}

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split()))

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def _parse(path: Path) -> _Doc:
    doc = _Doc()
    doc.feed(path.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """evaluate() of an untrained tiny model on 8 UTKFace-named images + 5 FER2013 images, with samples."""
    from facemtl.models import create_model, save_checkpoint
    from facemtl.tasks import list_tasks

    root = tmp_path_factory.mktemp("report_data")
    utk = root / "utkface"
    utk.mkdir()
    for i, (age, gender, race) in enumerate(UTK_LABELS):
        Image.fromarray(draw_face(64, seed=i, tone=120 + 15 * i)).save(
            utk / f"{age}_{gender}_{race}_2017011617452{i:04d}.jpg.chip.jpg", quality=90)
    fer = root / "fer2013"
    for split, prefix, emotions in (("train", "Training", ("happy", "sad", "angry")), ("test", "PublicTest",
                                                                                      ("happy", "sad"))):
        for j, emo in enumerate(emotions):
            (fer / split / emo).mkdir(parents=True)
            Image.fromarray(draw_face(48, seed=100 + j + (10 if split == "test" else 0))[:, :, 1], "L").save(fer / split / emo / f"{prefix}_{j}.jpg")
    import torch

    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", create_model("tiny", tasks=list_tasks(), input_size=32).eval())
    rep = evaluate(EvaluateConfig(model=str(ckpt), utkface=str(utk), fer2013=str(fer), split="all", bootstrap=20,
                                  fairness_min_count=1, keep_samples=True, batch_size=8))
    return {"report": rep, "root": root, "ckpt": ckpt, "utk": utk, "fer": fer}


def test_keep_samples_is_json_and_off_by_default(tiny_report):
    rep = tiny_report["report"]
    s = rep["samples"]
    assert len(s) == rep["data"]["n_images"] == 13
    json.dumps(rep, allow_nan=False)
    assert {"path", "true", "pred", "probs"} <= set(s[0])
    assert set(s[0]["probs"]) == {"gender", "emotion", "ethnicity"}
    assert EvaluateConfig(utkface="x").keep_samples is False


def test_write_report_sections_charts_tables(tiny_report, tmp_path):
    index = write_report(tiny_report["report"], tmp_path / "rep")
    assert index == tmp_path / "rep" / "index.html"
    html_text = index.read_text()
    doc = _parse(index)
    assert set(SECTIONS) <= doc.ids("section")
    # charts: age scatter, MAE-per-band bars, error histogram, one reliability diagram per classification head
    for cls in ("scatter", "bars", "histogram"):
        assert doc.count("svg", cls) == 1, cls
    assert doc.count("svg", "reliability") == 3
    assert doc.count("table", "confusion") == 3
    assert doc.count("table", "fairness") >= 3
    assert doc.count("figure", "card") > 0 and doc.count("img") > 0
    # self-contained: no external resources
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            v = attrs.get(key) or ""
            assert not v or v.startswith(("data:", "#")), (tag, v)
    assert "<script" not in html_text.lower()
    text = doc.all_text
    for word in ("MAE", "macro-F1", "ECE", "worst", "gap", "split"):
        assert word in text
    # FER2013 images carry no ethnicity/gender/age: emotion has no per-group table, and says so
    assert "emotion: none of the 5 emotion-labelled images also has a group label" in text


def test_json_and_csvs(tiny_report, tmp_path):
    rep = tiny_report["report"]
    write_report(rep, tmp_path)
    back = json.loads((tmp_path / "report.json").read_text())
    assert back["metrics"] == json.loads(json.dumps(rep["metrics"]))
    assert back["fairness"]["tasks"].keys() == rep["fairness"]["tasks"].keys()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    assert rows and set(rows[0]) == {"task", "metric", "value"}
    mae = [r for r in rows if r["task"] == "age" and r["metric"] == "mae"]
    assert len(mae) == 1 and float(mae[0]["value"]) == pytest.approx(rep["metrics"]["age"]["mae"])
    frows = list(csv.DictReader((tmp_path / "fairness.csv").read_text().splitlines()))
    assert frows and {"task", "grouping", "ethnicity", "gender", "age_band", "n", "value", "ci_low",
                      "ci_high"} <= set(frows[0])


def test_task_without_labels_shows_note_and_no_samples_note(tiny_report, tmp_path):
    rep = copy.deepcopy(tiny_report["report"])
    rep["metrics"]["emotion"] = {"n": 0, "note": "no emotion labels in this data: task skipped"}
    rep["fairness"]["tasks"].pop("emotion", None)
    rep.pop("samples")
    index = write_report(rep, tmp_path)
    text = _parse(index).all_text
    assert text.count("no emotion labels in this data") >= 2  # metrics and confusion sections
    assert "no per-image data" in text
    doc = _parse(index)
    assert doc.count("table", "confusion") == 2 and doc.count("svg", "reliability") == 2
    assert doc.count("svg", "scatter") == 0 and doc.count("figure", "card") == 0


def test_empty_fairness_group_not_shown_as_percent(tiny_report, tmp_path):
    rep = copy.deepcopy(tiny_report["report"])
    tab = rep["fairness"]["tasks"]["gender"]
    # drop every 'others' ethnicity row: that group is now empty
    tab["rows"] = [r for r in tab["rows"] if r["group"].get("ethnicity") != "others"]
    index = write_report(rep, tmp_path)
    html_text = index.read_text()
    start = html_text.index('id="fairness"')
    fair = html_text[start:html_text.index("</section>", start)]
    gender = fair[fair.index("gender — accuracy"):]
    gender = gender[gender.index("by ethnicity"):]
    row = gender[gender.index("ethnicity: others"):]
    row = row[:row.index("</tr>")]
    assert "no labelled images" in row and "%" not in row


def test_html_escaping(tiny_report, tmp_path):
    rep = copy.deepcopy(tiny_report["report"])
    evil = "<script>alert(1)</script>"
    rep["metrics"]["gender"]["confusion_matrix"]["labels"][0] = evil
    rep["metrics"]["gender"]["per_class"] = {evil: rep["metrics"]["gender"]["per_class"]["male"]}
    rep["data"]["config"]["utkface"] = evil
    rep["fairness"]["tasks"]["age"]["rows"][0]["group"] = {"ethnicity": evil}
    rep["samples"][0]["true"]["emotion"] = evil
    index = write_report(rep, tmp_path)
    html_text = index.read_text()
    assert "<script" not in html_text.lower()
    assert "&lt;script&gt;" in html_text
    assert evil in _parse(index).all_text  # the text itself survives


def test_cli_report_flag(tiny_report, tmp_path, capsys):
    out = tmp_path / "rep"
    js = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tiny_report["ckpt"]), "--utkface", str(tiny_report["utk"]),
                 "--split", "all", "--bootstrap", "0", "--report", str(out), "--json", str(js)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "index.html")
    assert (out / "index.html").is_file() and (out / "metrics.csv").is_file() and (out / "fairness.csv").is_file()
    assert "samples" not in json.loads(js.read_text())  # --json files do not grow
    assert len(json.loads((out / "report.json").read_text())["samples"]) == 8
    assert _parse(out / "index.html").count("figure", "card") > 0
