"""The HTML evaluation report: sections, SVG charts, tables, JSON/CSV outputs, notes, escaping, CLI flag."""
from __future__ import annotations

import copy
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import UTK_LABELS, calibrated_copy, draw_face
from PIL import Image

from facemtl.cli.__main__ import main
from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
from facemtl.report.html import write_report

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
            gray = draw_face(48, seed=100 + j + (10 if split == "test" else 0))[:, :, 1]
            Image.fromarray(gray, "L").save(fer / split / emo / f"{prefix}_{j}.jpg")
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
    assert {"path", "true", "pred", "probs", "key", "split", "true_interval", "true_majority"} <= set(s[0])
    assert len({x["key"] for x in s}) == len(s)  # one key per image: two models' samples pair up by it
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


# -- the calibration section of a calibrated model ----------------------------------------------------------

# (age, gender, race): 7 of these 12 file names fall in the evaluation half (5 ethnicity x gender groups)
CAL_LABELS = [(25, 0, 0)] * 3 + [(30, 1, 0)] * 3 + [(45, 0, 1)] * 3 + [(65, 1, 1)] * 2 + [(8, 1, 2)]


class _Tables(HTMLParser):
    """The text of every cell, row by row, of each <table> with a class: {class: [[cell, ...], ...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._cls: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._cls = dict(attrs).get("class") or None
            if self._cls:
                self.tables[self._cls] = []
        elif tag == "tr" and self._cls:
            self.tables[self._cls].append([])
        elif tag in ("td", "th") and self._cls:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._cls = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._cls][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _section_html(html_text: str, sid: str) -> str:
    start = html_text.index(f'id="{sid}"')
    return html_text[start:html_text.index("</section>", start)]


def _tables(fragment: str) -> dict[str, dict[str, list[str]]]:
    """{table class: {first cell (or "first | second" for the ECE table): row cells}} without the header."""
    p = _Tables()
    p.feed(fragment)
    out = {}
    for cls, rows in p.tables.items():
        key = (lambda r: f"{r[0]} | {r[1]}") if cls == "ece-sources" else (lambda r: r[0])
        out[cls] = {key(r): r for r in rows[1:]}
    return out


def _pc(v) -> str:
    return f"{100 * v:.1f}%"


@pytest.fixture(scope="module")
def calibrated_report(tiny_report):
    """evaluate() of the tiny model with a stored calibration (synthetic age intervals, three temperatures) on
    12 UTKFace-named images and the 5 FER2013 images."""
    root = tiny_report["root"]
    utk = root / "utkface_cal"
    utk.mkdir()
    for i, (age, gender, race) in enumerate(CAL_LABELS):
        Image.fromarray(draw_face(64, seed=20 + i, tone=110 + 10 * i)).save(
            utk / f"{age}_{gender}_{race}_2017011617452{i:04d}.jpg.chip.jpg", quality=90)
    ckpt = calibrated_copy(tiny_report["ckpt"], root / "tiny_calibrated.pt")
    rep = evaluate(EvaluateConfig(model=str(ckpt), utkface=str(utk), fer2013=str(tiny_report["fer"]), split="all",
                                  bootstrap=50, fairness_min_count=1, keep_samples=True, batch_size=8))
    return {"report": rep, "ckpt": ckpt, "utk": utk}


def test_calibration_section_shows_the_measured_numbers(calibrated_report, tmp_path):
    from facemtl.report.text import format_calibration

    rep = calibrated_report["report"]
    cal = rep["calibration"]
    groups = {k: v for k, v in cal["age_by_group"].items() if v["n"]}
    assert set(cal["by_source"]) == {"utkface", "fer2013"} and len(groups) >= 4  # the fixture is what we think
    index = write_report(rep, tmp_path)
    html_text = index.read_text(encoding="utf-8")
    section = _section_html(html_text, "calibration")
    tables = _tables(section)
    assert cal["measured_on"] in section and "gender T=1.50, emotion T=0.80, ethnicity T=2.00" in section

    # age interval per source: faces, coverage, its bootstrap CI, mean and median width
    a = cal["by_source"]["utkface"]["age"]
    row = tables["coverage-sources"]["utkface"]
    assert row[1:6] == [str(a["n"]), _pc(a["coverage"]), f"{_pc(a['coverage_ci'][0])} – {_pc(a['coverage_ci'][1])}",
                        f"{a['mean_width']:.1f}", f"{a['median_width']:.1f}"]
    assert row[6].startswith("few")  # 7 faces: listed, not held to the 88-93% target
    assert "fer2013" in tables["coverage-sources"] and "no age labels" in tables["coverage-sources"]["fer2013"][2]

    # per ethnicity x gender: every measured group with its numbers, "few" under 100 faces; empty groups say so
    by_group = tables["coverage-groups"]
    assert len(by_group) == 10  # 5 ethnicities x 2 genders
    for name, g in groups.items():
        r = by_group[name]
        ci = f"{_pc(g['coverage_ci'][0])} – {_pc(g['coverage_ci'][1])}" if g["coverage_ci"] else "n/a"
        assert r[1:5] == [str(g["n"]), _pc(g["coverage"]), ci, f"{g['mean_width']:.1f}"]
        assert not g["held_to_target"] and r[6].startswith("few")
    empty = [r for name, r in by_group.items() if name not in groups]
    assert empty and all(r[1] == "0" and "no faces" in r[2] and "%" not in "".join(r) for r in empty)

    # ECE per source and head, before -> after, with the temperature
    ece = tables["ece-sources"]
    expected = {f"{src} | {task}": e for src, b in cal["by_source"].items() for task, e in b.get("ece", {}).items()}
    assert set(ece) == set(expected) and "fer2013 | emotion" in ece and "utkface | gender" in ece
    for key, e in expected.items():
        assert ece[key][2:6] == [str(e["n"]), _pc(e["before"]), _pc(e["after"]),
                                 f"{cal['temperatures'][key.split(' | ')[1]]:.2f}"]

    # every percentage `facemtl evaluate` prints for the calibration is in the section too
    text = " ".join(_fragment_text(section).split())
    for pct in re.findall(r"\d+\.\d%", format_calibration(cal)):
        assert pct in text

    # the reliability diagrams are the metrics' own (one per head), titled after calibration, in this section
    doc = _parse(index)
    assert doc.count("svg", "reliability") == 3 and section.count('class="chart reliability"') == 3
    for task in ("gender", "emotion", "ethnicity"):
        assert f'aria-label="{task}: after calibration (ECE {_pc(rep["metrics"][task]["ece"])})"' in section
    assert "Reliability diagrams after calibration" in section and "all evaluated images" in section
    assert "<script" not in html_text.lower() and 'src="http' not in html_text and "<link" not in html_text

    back = json.loads((tmp_path / "report.json").read_text())
    assert back["calibration"] == json.loads(json.dumps(cal))


def _fragment_text(fragment: str) -> str:
    d = _Doc()
    d.feed(fragment)
    return d.all_text


def test_calibration_section_verdicts_against_the_targets(calibrated_report, tmp_path):
    from facemtl.report.html import render_html

    rep = copy.deepcopy(calibrated_report["report"])
    cal = rep["calibration"]
    cal["by_source"]["utkface"]["age"].update(n=400, coverage=0.9, coverage_ci=[0.87, 0.93])
    cal["by_source"]["fer2013"]["ece"]["emotion"].update(n=300, after=0.02, before=0.11)
    cal["by_source"]["utkface"]["ece"]["gender"].update(n=400, after=0.05)
    first, second = [k for k, v in cal["age_by_group"].items() if v["n"]][:2]
    cal["age_by_group"][first].update(n=150, coverage=0.86, held_to_target=True)
    cal["age_by_group"][second].update(n=120, coverage=0.8, held_to_target=True)
    tables = _tables(_section_html(render_html(rep), "calibration"))
    assert tables["coverage-sources"]["utkface"][2:4] == ["90.0%", "87.0% – 93.0%"]
    assert tables["coverage-sources"]["utkface"][6] == "met"
    assert tables["ece-sources"]["fer2013 | emotion"][3:5] == ["11.0%", "2.0%"]
    assert tables["ece-sources"]["fer2013 | emotion"][6] == "met"
    assert tables["ece-sources"]["utkface | gender"][6] == "not met"
    assert tables["coverage-groups"][first][1:3] == ["150", "86.0%"] and tables["coverage-groups"][first][6] == "met"
    assert tables["coverage-groups"][second][6] == "not met"
    # the targets are stated for the 90% interval only
    cal["level"] = 0.8
    tables = _tables(_section_html(render_html(rep), "calibration"))
    assert tables["coverage-sources"]["utkface"][6] == "no target at this level"
    assert tables["coverage-groups"][first][6] == "no target at this level"


def test_uncalibrated_model_has_no_calibration_tables(tiny_report, tmp_path):
    assert "calibration" not in tiny_report["report"]
    section = _section_html(write_report(tiny_report["report"], tmp_path).read_text(), "calibration")
    assert "stores no calibration" in section and "<table" not in section and "after calibration" not in section
    assert section.count('class="chart reliability"') == 3


def test_summary_leads_and_groups_too_small_to_compare_are_folded(tiny_report, tmp_path):
    """The report opens with the headline figure per task and source and the worst group per task; in the
    fairness tables, groups under min_count (and empty ones) sit in a collapsed <details>, not among the others."""
    rep = copy.deepcopy(tiny_report["report"])
    rep["fairness"]["min_count"] = 2
    html_text = write_report(rep, tmp_path).read_text(encoding="utf-8")
    assert html_text.index('<section id="summary">') < html_text.index('<section id="data">')
    summary = _section_html(html_text, "summary")
    heads = _tables(summary)
    assert heads["headline"]["age"][2].startswith(f"{rep['metrics']['age']['mae']:.2f}")
    assert heads["headline"]["gender"][2].startswith(f"{100 * rep['metrics']['gender']['accuracy']:.1f}%")
    assert "no labels" in heads["headline"]["emotion"][list(rep["by_source"]).index("utkface") + 3]
    w = rep["fairness"]["tasks"]["gender"]["worst_group"]
    assert heads["worst-groups"]["gender"][2].startswith(", ".join(f"{k}: {v}" for k, v in w["group"].items()))

    fair = _section_html(html_text, "fairness")
    for task, tab in rep["fairness"]["tasks"].items():
        for r in tab.get("rows", []):
            if r["n"] >= 2 or r.get("value") is None:
                continue
            name = ", ".join(f"{k}: {v}" for k, v in r["group"].items())
            block = fair[fair.index(f"{task} — "):]
            block = block[block.index(f'data-grouping="{r["grouping"]}"'):]
            block = block[:block.index('<div class="grouping"') if '<div class="grouping"' in block else None]
            main_table, _, folded = block.partition("<details")
            assert f">{name}<" not in main_table and f">{name}<" in folded, (task, name)
    assert '<details class="folded"' in fair and "too small to compare" in fair and "<details open" not in fair


def test_audit_page_charts_each_grouping_with_ci_whiskers(tiny_report, tmp_path):
    from facemtl.report.html import write_audit

    rep = copy.deepcopy(tiny_report["report"])
    rep["fairness"]["min_count"] = 2
    page = write_audit(rep, tmp_path).read_text(encoding="utf-8")
    assert page.index('id="summary"') < page.index('id="fairness"')
    charts = re.findall(r'<svg [^>]*class="chart groups"[^>]*aria-label="([^"]*)"[^>]*>(.*?)</svg>', page, re.DOTALL)
    expected = {}
    for task, tab in rep["fairness"]["tasks"].items():
        for r in tab.get("rows", []):
            if r.get("value") is not None and r["n"] >= 2:
                expected.setdefault(f"{task}: {'MAE (years)' if task == 'age' else 'accuracy'} by {r['grouping']}",
                                    []).append(r)
    assert expected and {label for label, _ in charts} == set(expected)
    for label, svg in charts:
        rows = expected[label]
        assert svg.count("<rect ") - 1 == len(rows)  # one bar a compared group (the first rect is the frame)
        assert svg.count('class="ci"') == sum(r.get("ci_low") is not None for r in rows)
    assert "<script" not in page.lower()
