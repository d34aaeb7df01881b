"""The configuration dataclasses are validated when built and frozen after: a changed config is a new one,
made (and validated again) by ``dataclasses.replace``; recipes and saved run configs still load."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from facemtl.cli._args import load_yaml_config
from facemtl.crop import CropGeometry
from facemtl.data.augment import AugmentConfig
from facemtl.errors import ConfigError, UnknownNameError
from facemtl.models.factory import ModelConfig
from facemtl.preprocess import Framing
from facemtl.train.config import TrainConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("config, field, value", [
    (TrainConfig(backbone="tiny"), "epochs", 3),
    (TrainConfig(backbone="tiny"), "augment", AugmentConfig.off()),
    (ModelConfig(backbone="tiny"), "input_size", 64),
    (AugmentConfig(), "hflip", False),
    (CropGeometry(), "scale", 1.0),
    (Framing(), "detector", "none"),
])
def test_every_config_is_frozen(config, field, value):
    before = getattr(config, field)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, value)
    assert getattr(config, field) == before
    changed = dataclasses.replace(config, **{field: value})
    assert getattr(changed, field) == value and getattr(config, field) == before


def test_replace_validates_again():
    cfg = TrainConfig(backbone="tiny")
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        dataclasses.replace(cfg, epochs=0)
    with pytest.raises(ConfigError, match="ema_decay"):
        dataclasses.replace(cfg, ema_decay=1.0)
    with pytest.raises(UnknownNameError, match="hinge"):
        dataclasses.replace(cfg, age_loss="hinge")
    with pytest.raises(UnknownNameError, match="no-such-backbone"):
        dataclasses.replace(cfg, backbone="no-such-backbone")
    model_cfg = ModelConfig(backbone="tiny")
    with pytest.raises(ConfigError, match="input_size 8 is too small"):
        dataclasses.replace(model_cfg, input_size=8)
    with pytest.raises(UnknownNameError, match="regression_head"):
        dataclasses.replace(model_cfg, regression_head="trees")
    # normalisation runs again too: tasks in registry order, lists as tuples
    again = dataclasses.replace(cfg, tasks=["gender", "age"], balance_by=["gender"], manifest=["m.csv"])
    assert again.tasks == ("age", "gender") and again.balance_by == ("gender",) and again.manifest == ("m.csv",)
    assert dataclasses.replace(model_cfg, tasks=["gender", "age"]).tasks == ("age", "gender")


def test_post_init_normalises_a_frozen_config():
    cfg = TrainConfig(backbone="tiny", tasks=["emotion", "age"], manifest=None, balance_by=["ethnicity"],
                      augment={"hflip": False}, geometry={"scale": 1.0}, framing={"detector": "none"})
    assert cfg.tasks == ("age", "emotion") and cfg.manifest == () and cfg.balance_by == ("ethnicity",)
    assert cfg.augment == dataclasses.replace(AugmentConfig(), hflip=False)
    assert cfg.geometry == CropGeometry(scale=1.0) and cfg.framing == Framing(detector="none")
    with pytest.raises(UnknownNameError, match="augment option"):
        TrainConfig(augment={"blurr_p": 0.5})


def test_a_saved_train_config_builds_the_same_config():
    """A run's checkpoint keeps ``cfg.to_dict()`` (dict-typed fields and nested configs as dicts)."""
    cfg = TrainConfig(backbone="tiny", sample_ratio={"utkface": 1.0, "fer2013": 3.0},
                      source_val_fraction={"fairface": 0.2}, augment=AugmentConfig.off(hflip=True),
                      geometry=CropGeometry(align=False), tasks=("age", "gender"))
    assert TrainConfig(**cfg.to_dict()) == cfg
    assert ModelConfig(**dataclasses.asdict(ModelConfig(backbone="tiny", input_size=32))) == ModelConfig(
        backbone="tiny", input_size=32)


@pytest.mark.parametrize("recipe", ["default.yaml", "finetune-0.3.yaml"])
def test_recipes_load_into_a_train_config(recipe):
    cfg = TrainConfig(**load_yaml_config(str(RECIPES / recipe), TrainConfig))
    assert cfg.backbone == "lite0" and cfg.input_size == 112 and isinstance(cfg.sample_ratio, dict)
    assert TrainConfig(**cfg.to_dict()) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.resume = True  # type: ignore[misc]
    assert dataclasses.replace(cfg, resume=True).resume is True
