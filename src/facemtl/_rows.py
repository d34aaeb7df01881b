"""Flatten results into table rows (one per face; one per image without faces; one per failed file).

The columns derive from the task registry; used by ``facemtl batch`` CSV output and the per-frame video CSV.
"""
from __future__ import annotations

from typing import Any

from .tasks import get_task, list_tasks

__all__ = ["csv_columns", "csv_rows"]


def csv_columns() -> list[str]:
    cols = ["file", "face", "n_faces", "x1", "y1", "x2", "y2", "det_score"]
    for name in list_tasks():
        spec = get_task(name)
        if spec.kind == "regression":
            cols += [name, f"{name}_group"]
        else:
            cols += [name, f"{name}_prob"] + [f"{name}.{lab}" for lab in spec.labels]
    return cols + ["error"]


def csv_rows(res: Any) -> list[dict[str, Any]]:
    """Flatten one ImageResult (or ItemError) into CSV rows, from the same fields as to_dict()."""
    if not hasattr(res, "faces"):
        return [{"file": res.source, "face": "", "n_faces": "", "error": res.error}]
    if not res.faces:
        return [{"file": res.source, "face": "", "n_faces": 0, "error": ""}]
    rows = []
    for i, face in enumerate(res.faces):
        row: dict[str, Any] = {"file": res.source, "face": i, "n_faces": len(res.faces), "error": "",
                               "det_score": round(face.score, 4)}
        row.update(zip(("x1", "y1", "x2", "y2"), (round(v, 1) for v in face.box.xyxy)))
        for name, pred in face.attributes.items():
            if get_task(name).kind == "regression":
                row[name], row[f"{name}_group"] = round(pred.value, 2), pred.label
            else:
                row[name], row[f"{name}_prob"] = pred.label, round(pred.value, 4)
                for lab, p in (pred.probs or {}).items():
                    row[f"{name}.{lab}"] = round(p, 4)
        rows.append(row)
    return rows
