"""--device: one helper (facemtl._device.resolve_device) gives auto|cpu|cuda|cuda:N one meaning in every command
that runs a model; a missing GPU or an unknown name is one clear error, never a torch traceback."""
from __future__ import annotations

import pytest
import torch
from conftest import draw_face
from PIL import Image

from facemtl._device import check_device_name, resolve_device
from facemtl.cli.__main__ import main
from facemtl.errors import DeviceError, FacemtlError, UnknownNameError


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without a CUDA GPU, whatever it has; loading a model is an error (the device must be
    refused before any loading)."""
    from facemtl.analyzer import FaceAnalyzer

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the device was checked")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(FaceAnalyzer, "from_checkpoint", no_model)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(draw_face(64)).save(path)
    return str(path)


def _commands(image: str, tmp_path) -> dict[str, list[str]]:
    """Every command that runs a model, with the arguments it needs to get as far as choosing the device."""
    return {"predict": ["predict", image], "batch": ["batch", image, "--out", str(tmp_path / "r.csv")],
            "explain": ["explain", image, "--out", str(tmp_path / "cam.png")], "serve": ["serve"],
            "evaluate": ["evaluate"], "audit": ["audit"],
            "train": ["train", "--backbone", "tiny", "--no-pretrained", "--out", str(tmp_path / "run")]}


def test_names_resolve_the_same_way(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert check_device_name("cuda:0") == "cuda:0"


def test_unavailable_or_unknown_devices_are_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(DeviceError, match=rf"device '{name}' is not available: no CUDA device is available"):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match=r"'cuda:3' is not available: this machine has 1 CUDA device\(s\) "
                                          r"\(valid: cuda, cuda:0, cpu, auto\)"):
        resolve_device("cuda:3")
    for bad in ("tpu", "gpu0", "cuda:", "cuda:x", ""):
        with pytest.raises(UnknownNameError, match=r"unknown device .*; valid: auto, cpu, cuda, cuda:N"):
            resolve_device(bad)
    assert issubclass(DeviceError, FacemtlError)


def test_predict_device_cuda_without_a_gpu_exits_1_with_the_reason(capsys, no_cuda, image):
    assert main(["predict", image, "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "facemtl predict: error: device 'cuda' is not available: no CUDA device is available" in err
    assert "Traceback" not in err


def test_every_model_command_refuses_a_missing_gpu_the_same_way(capsys, no_cuda, image, tmp_path):
    for name, argv in _commands(image, tmp_path).items():
        for device in ("cuda", "cuda:3"):
            assert main([*argv, "--device", device]) == 1, name
            err = capsys.readouterr().err
            assert f"facemtl {name}: error: device '{device}' is not available: no CUDA device is available" in err


def test_every_model_command_refuses_an_unknown_device_name_with_the_choices(capsys, image, tmp_path):
    for name, argv in _commands(image, tmp_path).items():
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--device", "tpu"])
        assert exc.value.code == 2, name
        err = capsys.readouterr().err
        assert "argument --device: unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N" in err, name


def test_train_config_file_device_is_checked_too(capsys, no_cuda, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device: cuda\nbackbone: tiny\npretrained: false\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 1
    assert "device 'cuda' is not available" in capsys.readouterr().err


def test_auto_reaches_the_model_resolved(monkeypatch, image):
    from facemtl.analyzer import FaceAnalyzer

    seen = {}

    def capture(path=None, **kwargs):
        seen["device"] = kwargs["device"]
        raise FacemtlError("stop here")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(FaceAnalyzer, "from_checkpoint", capture)
    assert main(["predict", image, "--device", "auto"]) == 1
    assert seen["device"] == "cpu"  # before: torch.device('auto') raised a RuntimeError traceback
