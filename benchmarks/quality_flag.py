"""What the quality flag singles out, and the gender accuracy by true age, on the held-out faces of every source.

Every held-out image of UTKFace, FairFace and celeba_gender (the split a training run wrote: ``--split-csv``;
default: the seeded split of the recipes, seed 0, UTKFace 10%, the others 20%) goes through the photo path of
``facemtl predict`` (``FaceAnalyzer``, the default detector, largest face). Printed per source: how many faces are
``quality=ok`` and ``low``, the gender accuracy and age MAE of each, and the most frequent reasons; then UTKFace's
gender accuracy by true age group (where its errors are: young children).

    PYTHONPATH=src python benchmarks/quality_flag.py [--model NAME_OR_FILE] [--split-csv RUN/split.csv]
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from _common import DATA

from facemtl import FaceAnalyzer
from facemtl.analyzer import ItemError
from facemtl.data.gather import gather_records
from facemtl.data.split import read_split_manifest

AGE_BANDS = ((0, 3), (3, 10), (10, 20), (20, 60), (60, 200))  # years: lower inclusive, upper exclusive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="bundled name, .onnx or .pt (default: the bundled model)")
    p.add_argument("--split-csv", default=None, help="a run's split.csv (default: the seeded split, seed 0)")
    args = p.parse_args()
    records, _, _ = gather_records(str(DATA / "utkface"), None, (), None, 0.1, 0, fairface=str(DATA / "fairface"),
                                   celeba_gender=str(DATA / "celeba_gender"),
                                   source_val_fraction={"fairface": 0.2, "celeba_gender": 0.2})
    if args.split_csv:
        splits = read_split_manifest(args.split_csv)
        for r in records:
            r.split = splits.get(r.compute_digest(), "not in the run")
    held_out = [r for r in records if r.split == "val"]
    analyzer = FaceAnalyzer.from_checkpoint(args.model, largest_only=True)
    rows = []
    for r, res in zip(held_out, analyzer.analyze_many((r.image_source() for r in held_out), errors="record")):
        if isinstance(res, ItemError) or not res.faces:
            continue
        face, gender, age = res.faces[0], r.labels.get("gender"), r.labels.get("age")
        rows.append({"source": r.source, "quality": face.quality, "reasons": face.quality_reasons, "true_age": age,
                     "right": face["gender"].label == gender if gender is not None and "gender" in face else None,
                     "age_error": abs(face["age"].value - float(age)) if age is not None and "age" in face else None})
    print("| source | quality | n | gender accuracy | age MAE | most frequent reasons |\n|---|---|---:|---:|---:|---|")
    for source in sorted({x["source"] for x in rows}):
        reasons = Counter(why for x in rows if x["source"] == source for why in x["reasons"]).most_common(3)
        for q in ("ok", "low"):
            s = [x for x in rows if x["source"] == source and x["quality"] == q]
            g = [x["right"] for x in s if x["right"] is not None]
            e = [x["age_error"] for x in s if x["age_error"] is not None]
            why = ", ".join(f"{w} ({n})" for w, n in reasons) if q == "low" else ""
            print(f"| {source} | {q} | {len(s)} | {_pct(g)} | {f'{np.mean(e):.2f}' if e else ''} | {why} |")
    utk = [x for x in rows if x["source"] == "utkface" and x["right"] is not None and x["true_age"] is not None]
    print("\nUTKFace gender accuracy by true age (photo path):")
    for lo, hi in AGE_BANDS:
        s = [x["right"] for x in utk if lo <= float(x["true_age"]) < hi]
        print(f"  {f'{lo}-{hi - 1}' if hi < 200 else f'{lo}+'}: {_pct(s)} (n={len(s)}, {len(s) - sum(s)} wrong)")
    print(f"  10 and over: {_pct([x['right'] for x in utk if float(x['true_age']) >= 10])}")


def _pct(flags: list[bool]) -> str:
    return f"{100 * np.mean(flags):.1f}%" if flags else ""

if __name__ == "__main__":
    main()
