"""scripts/average_weights.py: the weight average ("model soup") the 0.3 fine-tuning round starts from."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from facemtl.models import create_model, load_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from average_weights import average, main  # noqa: E402


def _ckpt(path: Path, seed: int, **kw) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(path, create_model("tiny", input_size=kw.pop("input_size", 32), **kw),
                    extra={"train_config": {"seed": seed}})
    return path


def test_the_average_is_the_weighted_mean_and_keeps_the_first_record(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    sa, sb = (load_checkpoint(p)[0].state_dict() for p in (a, b))
    soup, meta = load_checkpoint(average(a, b, tmp_path / "s.pt", weight=0.25))
    for k, v in soup.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.75 * sa[k] + 0.25 * sb[k], atol=1e-6), k
    assert meta["train_config"] == {"seed": 0}  # a fine-tuning run from it keeps A's split
    same, _ = load_checkpoint(average(a, b, tmp_path / "a0.pt", weight=0.0))
    assert all(torch.equal(v, sa[k]) for k, v in same.state_dict().items())


def test_other_architectures_and_bad_weights_are_refused(tmp_path, capsys):
    a, other = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "o.pt", 1, input_size=48)
    assert main([str(a), str(other), "--out", str(tmp_path / "s.pt")]) == 2
    assert "differ in model_config" in capsys.readouterr().err and not (tmp_path / "s.pt").exists()
    with pytest.raises(Exception, match="--weight must be in"):
        average(a, a, tmp_path / "s.pt", weight=1.5)
