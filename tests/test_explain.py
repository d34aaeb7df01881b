"""Grad-CAM explanations: heat maps per head on every backbone, explain_face errors, the panel and the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAKE_DETECTIONS, FakeDetector
from PIL import Image

from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
from facemtl.cli.__main__ import main
from facemtl.errors import FacemtlError, InvalidInputError, UnknownNameError
from facemtl.explain import MIN_FACE_PX, ExplainResult, GradCAM, explain_face, render_panel
from facemtl.explain.gradcam import _as_grid, normalise_cam, task_target
from facemtl.models import create_model, list_backbones
from facemtl.tasks import get_task, list_tasks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OBAMA_BIDEN = DATA / "wild" / "facerec_obama_and_biden.jpg"


def _check_maps(maps: dict[str, np.ndarray], tasks, size: int) -> None:
    assert list(maps) == list(tasks)
    for name, m in maps.items():
        assert m.shape == (size, size), name
        assert m.dtype == np.float32 and np.isfinite(m).all(), name
        assert m.min() >= 0.0 and m.max() <= 1.0, name


def test_heatmaps_shape_and_range(tiny_model):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(tiny_model)
    maps = cam.heatmaps(x)
    _check_maps(maps, list_tasks(), 64)
    assert any(m.max() == 1.0 for m in maps.values())
    # hooks are gone, weights got no .grad, the mode is restored
    assert not cam.layer._forward_hooks
    assert all(p.grad is None for p in tiny_model.parameters())
    assert not tiny_model.training
    # a non-square input keeps its own (H, W)
    assert GradCAM(tiny_model).heatmaps(torch.rand(1, 3, 48, 64), ["gender"])["gender"].shape == (48, 64)


def test_heatmaps_bad_input_and_unknown_task(tiny_model):
    cam = GradCAM(tiny_model)
    with pytest.raises(InvalidInputError, match=r"\(1, 3, H, W\)"):
        cam.heatmaps(torch.rand(2, 3, 64, 64))
    with pytest.raises(UnknownNameError, match="gendr"):
        cam.heatmaps(torch.rand(1, 3, 64, 64), ["gendr"])
    with pytest.raises(UnknownNameError, match="happy"):
        cam.heatmaps(torch.rand(1, 3, 64, 64), ["emotion"], {"emotion": "happy!"})
    with pytest.raises(FacemtlError, match="ONNX"):
        GradCAM(object())  # e.g. the analyzer's ONNX Runtime model: no gradients


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_cam_layer_gives_a_map(name):
    torch.manual_seed(0)
    model = create_model(name, input_size=64)  # left in train mode: GradCAM must switch to eval and back
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    maps = GradCAM(model).heatmaps(x)  # one forward, one backward per head down to the cam layer only
    _check_maps(maps, list_tasks(), 64)
    assert any(float(m.max() - m.min()) > 0.5 for m in maps.values()), f"{name}: every map is constant"
    assert model.training


@pytest.mark.parametrize("head", ["bins", "scalar"])
def test_regression_target(head):
    torch.manual_seed(0)
    model = create_model("tiny", tasks=("age", "gender"), regression_head=head).eval()
    spec = get_task("age")
    with torch.no_grad():
        raw = model(torch.rand(1, 3, 64, 64))["age"]
    assert raw.shape == (1, spec.head_width(head))
    target = task_target(spec, raw)
    if head == "bins":  # the expected age, the very number decode_raw reports (inside the range: no clamp)
        assert float(target) == pytest.approx(float(spec.decode_raw(raw)[0][0]), abs=1e-4)
    else:
        assert float(target) == float(raw[0, 0])
    maps = GradCAM(model).heatmaps(torch.rand(1, 3, 64, 64), ["age"])
    _check_maps(maps, ["age"], 64)
    with pytest.raises(InvalidInputError, match="regression"):
        task_target(spec, raw, "old")


def test_classification_target_follows_label(tiny_model):
    with torch.no_grad():
        raw = tiny_model(torch.rand(1, 3, 64, 64))["emotion"]
    spec = get_task("emotion")
    assert float(task_target(spec, raw)) == float(raw.max())
    assert float(task_target(spec, raw, "sad")) == float(raw[0, spec.labels.index("sad")])


def test_normalise_cam_constant_and_zero_maps_stay_zero():
    for t in (torch.zeros(8, 8), torch.full((8, 8), 3.0)):
        m = normalise_cam(t)
        assert m.shape == (8, 8) and not np.isnan(m).any() and m.max() == 0.0
    m = normalise_cam(torch.tensor([[0.0, 2e-15], [1e-15, 0.0]]))  # tiny but real (an untrained deep net)
    assert m.max() == 1.0 and m[1, 0] == pytest.approx(0.5)


def test_token_activations_become_a_grid():
    tokens = torch.arange(2 * 17 * 5, dtype=torch.float32).view(2, 17, 5)  # class token + 4x4 patches, 5 dims
    assert _as_grid(tokens, "blocks.11").shape == (2, 5, 4, 4)


def _analyzer(model, detections, size: int = 64) -> FaceAnalyzer:
    return FaceAnalyzer(model, FakeDetector(detections), size, options=AnalyzerOptions(flip_tta=True))


def test_explain_face_uses_the_prediction_path(tiny_model, face_image):
    analyzer = _analyzer(tiny_model, list(FAKE_DETECTIONS))
    res = explain_face(analyzer, face_image, face_index=0)
    expected = analyzer(face_image)
    crops = analyzer._prepare(face_image)[3]
    assert np.array_equal(res.crop, crops[0]) and res.crop.shape == (64, 64, 3) and res.crop.dtype == np.uint8
    assert res.face == expected.faces[0]
    assert res.predictions == expected.faces[0].attributes
    _check_maps(res.heatmaps, list_tasks(), 64)
    assert res.targets["age"] is None and res.targets["emotion"] == res.predictions["emotion"].label
    sub = explain_face(analyzer, face_image, tasks="emotion,age", labels={"emotion": "sad"})
    assert list(sub.heatmaps) == ["emotion", "age"] and sub.targets["emotion"] == "sad"


def test_render_panel(tiny_model, face_image):
    res = explain_face(_analyzer(tiny_model, list(FAKE_DETECTIONS)), face_image)
    panel = render_panel(res, tile=96)
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
    assert panel.shape[1] >= 5 * 96 and panel.shape[0] > 96  # crop + 4 overlays, captions below
    assert isinstance(res, ExplainResult)


def test_errors_no_face_index_tiny_face(tiny_model, face_image):
    with pytest.raises(InvalidInputError, match="no face found in <array 64x64x3>"):
        explain_face(_analyzer(tiny_model, []), face_image)
    analyzer = _analyzer(tiny_model, list(FAKE_DETECTIONS))
    with pytest.raises(InvalidInputError, match=r"face index 2 is out of range: 2 face\(s\) found"):
        explain_face(analyzer, face_image, face_index=2)
    with pytest.raises(InvalidInputError, match=r"only 16 px wide: too small for a meaningful heat map"):
        explain_face(analyzer, face_image, face_index=1)
    assert MIN_FACE_PX > 16
    with pytest.raises(UnknownNameError, match="gendr"):
        explain_face(analyzer, face_image, tasks=["gendr"])
    with pytest.raises(UnknownNameError, match="smug"):
        explain_face(analyzer, face_image, labels={"emotion": "smug"})


@pytest.mark.skipif(not OBAMA_BIDEN.is_file(), reason=f"shared data not found at {DATA}")
def test_cli_explain_writes_a_panel(tmp_path, capsys):
    out = tmp_path / "sub dir" / "cam.png"
    assert main(["explain", str(OBAMA_BIDEN), "--out", str(out), "--tile", "128"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and all(f"  {t}:" in printed for t in list_tasks())
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width >= 5 * 128
    assert main(["explain", str(OBAMA_BIDEN), "--out", str(out), "--face", "99"]) == 1
    assert "out of range" in capsys.readouterr().err
