"""What the service reports about its model (/info), and whether /explain can run for it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .._version import __version__

__all__ = ["checkpoint_label", "explainable", "model_info"]


def checkpoint_label(path: Any) -> str | None:
    """What /info shows of the checkpoint: its file name, or "bundled default"; never the server's folders."""
    if not path:
        return None
    try:
        from .. import weights

        for name in weights.list_weights():
            if Path(str(path)).resolve() == weights.get_weights(name).path(verify=False).resolve():
                return "bundled default" if name == weights.DEFAULT_NAME else f"bundled {name}"
    except Exception:  # noqa: BLE001 - no bundled file: just the name
        pass
    return Path(str(path)).name


def _task_info(spec: Any) -> dict[str, Any]:
    """One task as /info lists it (what the page shows it by): name, kind and labels (a regression task with a
    label grouping: the group names in ``label``, with ``group_name``), plus a regression task's value range and
    unit."""
    t: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
    if spec.kind == "classification":
        t["labels"] = list(spec.labels)
    else:
        t["value_range"] = list(spec.value_range) if spec.value_range else None
        if spec.label_grouping:
            t["labels"] = list(spec.group_names)  # the group names in `label` (age: the age groups)
            t["group_name"] = spec.label_grouping.replace("_", " ")  # "age group"
        t["unit"], t["unit_short"] = spec.unit, spec.unit_short
    return t


def model_info(analyzer: Any) -> dict[str, Any]:
    """What /info reports: version, backbone, input size, detector, tasks with their labels."""
    info = dict(getattr(analyzer, "info", {}) or {})
    model = analyzer.model
    tasks = [_task_info(spec) for spec in analyzer.tasks]
    det = analyzer.detector
    return {
        "facemtl_version": __version__,
        "backbone": getattr(getattr(model, "config", None), "backbone", None) or info.get("backbone"),
        "input_size": analyzer.input_size,
        "detector": getattr(det, "name", type(det).__name__),
        "tasks": tasks,
        "checkpoint": checkpoint_label(info.get("checkpoint")),
        "backend": getattr(model, "backend", None),
        "flip_tta": analyzer.options.flip_tta,
        "explain": explainable(analyzer),
    }


def explainable(analyzer: Any) -> bool:
    """Whether /explain can run: PyTorch is installed and the model is a PyTorch one with a cam layer, or the
    bundled default (explained through its PyTorch checkpoint, see :func:`facemtl.explain.face.explain_net`)."""
    from .._optional import available

    if not available("torch"):
        return False
    net = getattr(analyzer.model, "net", None)
    if net is not None:
        return bool(getattr(net, "cam_layer", None))
    from .. import weights

    return analyzer.info.get("checkpoint") == str(weights.get_weights().path(verify=False))
