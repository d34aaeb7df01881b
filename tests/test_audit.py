"""`facemtl audit`: per-group rows with n and CIs, worst/best/gap, summary, too-few and empty groups, files, errors."""
from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import pytest
from conftest import calibrated_copy, draw_face
from PIL import Image

from facemtl.cli.__main__ import main

# (age, gender, race) per image. With --min-count 3: white (6) and black (5) are compared, asian (1) is too few,
# indian and others have no image at all (empty groups); both genders, and 20-39 / 40-59 / 60+ / 0-19 age bands.
LABELS = [(25, 0, 0)] * 3 + [(30, 1, 0)] * 3 + [(45, 0, 1)] * 3 + [(65, 1, 1)] * 2 + [(8, 1, 2)]


@pytest.fixture(scope="module")
def audit_data(tmp_path_factory):
    """A tiny untrained checkpoint and 12 UTKFace-named images (no FER2013: emotion has no labels)."""
    import torch

    from facemtl.models import create_model, save_checkpoint
    from facemtl.tasks import list_tasks

    root = tmp_path_factory.mktemp("audit")
    utk = root / "utkface"
    utk.mkdir()
    for i, (age, gender, race) in enumerate(LABELS):
        Image.fromarray(draw_face(48, seed=i, tone=110 + 10 * i)).save(
            utk / f"{age}_{gender}_{race}_2017011617452{i:04d}.jpg.chip.jpg", quality=90)
    fer = root / "fer2013" / "test" / "happy"
    fer.mkdir(parents=True)
    Image.fromarray(draw_face(48, seed=99)[:, :, 1], "L").save(fer / "PublicTest_0.jpg")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.pt", create_model("tiny", tasks=list_tasks(), input_size=32).eval())
    return {"root": root, "ckpt": str(ckpt), "utk": str(utk), "fer": str(root / "fer2013")}


def _audit(d, *extra):
    return main(["audit", "--model", d["ckpt"], "--utkface", d["utk"], "--split", "all", "--batch-size", "16",
                 "--threads", "1", *extra])


def _block(text: str, task: str) -> str:
    start = text.index(f"== {task}:")
    end = text.find("\n== ", start + 1)
    return text[start:end if end >= 0 else None]


def test_audit_prints_groups_gaps_and_summary_and_writes_files(audit_data, tmp_path, capsys):
    out, js = tmp_path / "out", tmp_path / "audit.json"
    assert _audit(audit_data, "--min-count", "3", "--bootstrap", "50", "--out", str(out), "--json", str(js)) == 0
    text = capsys.readouterr().out
    assert "fairness audit by ethnicity, gender, age_band and their crossings" in text
    assert "95% bootstrap confidence interval (50 resamples)" in text
    gender = _block(text, "gender")
    lines = gender.splitlines()
    # per-group rows with the value, the CI and n, for single attributes and crossings
    white = next(ln for ln in lines if ln.strip().startswith("white ") and "n=6" in ln)
    assert "%" in white and "[" in white
    assert "  by ethnicity x gender:" in gender and any("white & female" in ln and "n=3" in ln for ln in lines)
    # a group under --min-count is "too few", an attribute value with no image is empty: never a percentage
    asian = next(ln for ln in lines if ln.strip().startswith("asian "))
    assert "too few (n=1)" in asian and "%" not in asian
    others = next(ln for ln in lines if ln.strip().startswith("others "))
    assert "no labelled images (n=0)" in others and "%" not in others
    # worst / best / largest gap (with its CI), per grouping and for the task, and the plain-language summary
    assert "  worst group: " in gender and "  best group: " in gender
    gap = next(ln for ln in lines if ln.startswith("  largest gap: "))
    assert "percentage points [" in gap
    assert "    -> gap " in gender
    summary = next(ln for ln in lines if ln.startswith("  summary: "))
    assert "the model does worst for" in summary and "confidence interval of the gap" in summary
    assert "were not compared" in summary  # the small groups are named as such
    age = _block(text, "age")
    assert "MAE (years), lower is better" in age and "largest gap: " in age and " years [" in age
    # a task without labels is skipped with a note
    assert "== emotion: skipped" in text and "no emotion labels in this data: task skipped" in text

    # --out: fairness.csv, fairness.json, audit.html
    assert str(out / "audit.html") in text
    rows = list(csv.DictReader((out / "fairness.csv").open(newline="")))
    assert list(rows[0]) == ["task", "grouping", "ethnicity", "gender", "age_band", "n", "metric", "value",
                             "ci_low", "ci_high"]
    assert {r["task"] for r in rows} == {"age", "gender", "ethnicity"}
    data = json.loads((out / "fairness.json").read_text())
    assert set(data) == {"model", "data", "fairness", "summary"}
    assert set(data["fairness"]) >= {"group_keys", "min_count", "n_boot", "alpha", "tasks"}
    g = data["fairness"]["tasks"]["gender"]
    assert {"rows", "by_grouping", "worst_group", "best_group", "gap", "gap_ci_low", "gap_ci_high"} <= set(g)
    assert data["summary"]["gender"] in text and "task skipped" in data["summary"]["emotion"]
    assert json.loads(js.read_text()) == data

    class Doc(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.ids.append(dict(attrs).get("id") or "")

        def handle_data(self, d):
            self.text.append(d)

    html = (out / "audit.html").read_text(encoding="utf-8")
    doc = Doc()
    doc.feed(html)
    assert "fairness" in doc.ids and "data" in doc.ids and "gallery" not in doc.ids
    assert "age-coverage" not in doc.ids and "interval coverage" not in text  # this model stores no calibration
    assert data["summary"]["gender"] in " ".join(doc.text)
    assert "<script" not in html.lower() and "src=\"http" not in html
    gender_html = html[html.index("gender — accuracy"):]
    asian_row = gender_html[gender_html.index("ethnicity: asian"):]
    asian_row = asian_row[:asian_row.index("</tr>")]
    assert "too few (n=1)" in asian_row and "%" not in asian_row


def test_by_restricts_groupings(audit_data, capsys):
    assert _audit(audit_data, "--by", "gender", "--bootstrap", "0", "--min-count", "1") == 0
    text = capsys.readouterr().out
    assert "fairness audit by gender\n" in text and "no confidence intervals" in text
    assert "by ethnicity" not in text and " x " not in _block(text, "gender")


def test_bad_by_names_the_value_and_the_choices(audit_data, capsys):
    assert _audit(audit_data, "--by", "ethnicity,race") == 1
    err = capsys.readouterr().err
    assert "'race'" in err and "age_band, ethnicity, gender" in err


def test_no_group_labels_is_an_error(audit_data, capsys):
    # FER2013 alone has no ethnicity/gender/age: refused before the model runs
    assert main(["audit", "--model", audit_data["ckpt"], "--fer2013", audit_data["fer"]]) == 1
    err = capsys.readouterr().err
    assert "nothing to audit" in err and "--utkface" in err
    # a manifest whose images carry only emotion labels: refused after the evaluation, with the same advice
    man = audit_data["root"] / "emotion_only.csv"
    man.write_text("path,emotion\nfer2013/test/happy/PublicTest_0.jpg,happy\n")
    assert main(["audit", "--model", audit_data["ckpt"], "--manifest", str(man), "--split", "all"]) == 1
    err = capsys.readouterr().err
    assert "nothing to audit" in err and "none of the 1 images" in err


def test_gap_confidence_interval() -> None:
    from facemtl.evaluate.fairness import group_table
    from facemtl.report.text import format_fairness

    recs = ([{"ethnicity": "white", "y_true": "happy", "y_pred": "happy"}] * 40
            + [{"ethnicity": "black", "y_true": "happy", "y_pred": "happy" if i % 2 else "sad"} for i in range(40)]
            + [{"ethnicity": "asian", "y_true": "happy", "y_pred": "sad"}] * 3)
    t = group_table(recs, "emotion", ("ethnicity",), min_count=10, n_boot=200)
    assert t["worst_group"]["group"] == {"ethnicity": "black"} and t["gap"] == pytest.approx(0.5)
    assert 0 < t["gap_ci_low"] <= t["gap"] <= t["gap_ci_high"]  # 100% vs 50% on 40 each: a real gap
    assert t == group_table(recs, "emotion", ("ethnicity",), min_count=10, n_boot=200)  # seeded
    assert "gap_ci_low" not in group_table(recs, "emotion", ("ethnicity",), min_count=10)
    text = format_fairness({"group_keys": ["ethnicity"], "min_count": 10, "n_boot": 200, "tasks": {"emotion": t}})
    asian = next(ln for ln in text.splitlines() if ln.strip().startswith("asian"))
    assert asian.split()[1:] == ["too", "few", "(n=3)"] and "excludes zero" in text
    # one compared group: no gap, and the sentence says why
    t1 = group_table(recs[:43], "emotion", ("ethnicity",), min_count=10, n_boot=50)
    assert t1["gap"] is None and "gap_ci_low" not in t1
    assert "only one group has at least 10 images" in format_fairness({"min_count": 10, "tasks": {"emotion": t1}})


def test_group_keys_config_and_flags() -> None:
    from facemtl.cli.__main__ import build_parser
    from facemtl.errors import FacemtlError
    from facemtl.evaluate.evaluate import EvaluateConfig

    assert EvaluateConfig(utkface="x").group_keys == ("ethnicity", "gender", "age_band")
    assert EvaluateConfig(utkface="x", group_keys=("gender, age_band", "gender")).group_keys == ("gender", "age_band")
    with pytest.raises(FacemtlError, match="choose from"):
        EvaluateConfig(utkface="x", group_keys=" , ")
    with pytest.raises(FacemtlError, match="bootstrap"):
        EvaluateConfig(utkface="x", bootstrap=-1)
    # evaluate shares the flags; --fairness-min-count still works as an alias of --min-count
    args = build_parser().parse_args(["evaluate", "--utkface", "x", "--fairness-min-count", "5", "--by", "gender"])
    assert args.fairness_min_count == 5 and args.group_keys == ["gender"]


def test_limit_with_val_split_stays_inside_the_checkpoints_val_split(audit_data):
    """--limit with --split val subsamples the split the checkpoint was trained with (its own limit: none),
    instead of re-splitting a subsample, whose "val" could hold training images."""
    import torch

    from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
    from facemtl.models import create_model, save_checkpoint
    from facemtl.tasks import list_tasks
    from facemtl.train.data import gather_records

    torch.manual_seed(0)
    ckpt = save_checkpoint(audit_data["root"] / "half_val.pt",
                           create_model("tiny", tasks=list_tasks(), input_size=32).eval(),
                           extra={"train_config": {"seed": 3, "val_fraction": 0.5, "limit": None}})
    records, _, _ = gather_records(audit_data["utk"], None, (), None, 0.5, 3)
    val = {r.path for r in records if r.split == "val"}
    assert 3 <= len(val) < len(records)
    rep = evaluate(EvaluateConfig(model=str(ckpt), utkface=audit_data["utk"], split="val", limit=3, bootstrap=0,
                                  batch_size=16, keep_samples=True))
    paths = [s["path"] for s in rep["samples"]]
    assert len(paths) == 3 and set(paths) <= val


def test_audit_of_a_calibrated_model_shows_age_interval_coverage_per_group(audit_data, tmp_path, capsys):
    """After the fairness summary: how often the age interval holds the true age per ethnicity x gender group
    (the evaluation half); the same numbers in fairness.json (its "calibration") and in audit.html."""
    from html.parser import HTMLParser

    ckpt = calibrated_copy(audit_data["ckpt"], tmp_path / "calibrated.pt")
    out, js = tmp_path / "out", tmp_path / "audit.json"
    assert main(["audit", "--model", str(ckpt), "--utkface", audit_data["utk"], "--split", "all", "--batch-size",
                 "16", "--threads", "1", "--min-count", "3", "--bootstrap", "50", "--out", str(out),
                 "--json", str(js)]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "fairness.json").read_text())
    assert set(data) == {"model", "data", "fairness", "summary", "calibration"}
    assert json.loads(js.read_text()) == data
    cal = data["calibration"]
    groups = {k: v for k, v in cal["age_by_group"].items() if v["n"]}
    assert len(groups) >= 4 and cal["level"] == 0.9 and cal["by_source"]["utkface"]["age"]["n"] == cal["n"]

    # printed after the fairness summary, one line a group with its coverage, CI, mean width and n
    head = "age 90% interval coverage by ethnicity x gender"
    assert text.index(head) > text.rindex("  summary: ")
    lines = text[text.index(head):].splitlines()
    assert "target >= 85% in every group of at least 100 faces" in lines[0]
    for name, g in groups.items():
        line = next(ln for ln in lines[1:] if ln.strip().startswith(name + " "))
        assert f"{100 * g['coverage']:.1f}%" in line and f"mean width {g['mean_width']:.1f} y" in line
        assert f"n={g['n']}" in line and "few: not held to the target" in line  # all under 100 faces
        if g["coverage_ci"]:
            assert f"[{100 * g['coverage_ci'][0]:.1f}%, {100 * g['coverage_ci'][1]:.1f}%]" in line

    # audit.html: the same table, a row per ethnicity x gender group
    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.inside = False
            self.cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.inside = "coverage-groups" in (dict(attrs).get("class") or "")
            elif tag == "tr" and self.inside:
                self.rows.append([])
            elif tag == "td" and self.inside:
                self.cell = []

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.rows[-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, d):
            if self.cell is not None:
                self.cell.append(d)

    page = (out / "audit.html").read_text(encoding="utf-8")
    section = page[page.index('id="age-coverage"'):]
    section = section[:section.index("</section>")]
    parser = Rows()
    parser.feed(section)
    rows = {r[0]: r for r in parser.rows if r}
    assert len(rows) == 10 and 'href="#age-coverage"' in page
    for name, g in groups.items():
        assert rows[name][1:3] == [str(g["n"]), f"{100 * g['coverage']:.1f}%"]
        assert rows[name][4] == f"{g['mean_width']:.1f}" and rows[name][6].startswith("few")
    assert all("no faces" in r[2] for name, r in rows.items() if name not in groups)

    # another level: measured at that level, no verdict against the 90% targets
    assert main(["audit", "--model", str(ckpt), "--utkface", audit_data["utk"], "--split", "all", "--bootstrap", "0",
                 "--threads", "1", "--age-interval", "0.8"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("age 80% interval coverage by ethnicity x gender"))
    assert "target" not in line and "(no CI)" in text


def test_format_age_coverage_verdicts() -> None:
    from facemtl.report.text import format_age_coverage

    section = {"level": 0.9, "measured_on": "the evaluation half", "n": 400, "age_by_group": {
        "white & male": {"n": 150, "coverage": 0.913, "coverage_ci": [0.87, 0.95], "mean_width": 12.34,
                         "held_to_target": True},
        "asian & female": {"n": 120, "coverage": 0.8, "coverage_ci": [0.72, 0.87], "mean_width": 10.0,
                           "held_to_target": True},
        "others & male": {"n": 7, "coverage": 0.571, "coverage_ci": None, "mean_width": 20.86,
                          "held_to_target": False}}}
    lines = format_age_coverage(section).splitlines()
    assert "(400 images); target >= 85% in every group of at least 100 faces" in lines[0]
    white, asian, others = lines[1:]
    assert white.split()[3:5] == ["91.3%", "[87.0%,"] and white.endswith("n=150  meets the target")
    assert "mean width 10.0 y" in asian and asian.endswith("below the target")
    assert "57.1% (no CI)" in others and others.endswith("n=7  few: not held to the target")
    assert format_age_coverage({**section, "age_by_group": {}}).endswith("age, ethnicity and gender labels)")
