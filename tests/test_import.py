"""Import hygiene: `import facemtl` stays light (no OpenCV, ONNX Runtime, web, plotting or table stacks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ["cv2", "onnxruntime", "fastapi", "onnx", "matplotlib", "pandas", "pyarrow"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json; {code}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_facemtl_is_light():
    assert _loaded_after("import facemtl; facemtl.list_tasks(); facemtl.__version__") == []


def test_lazy_analyzer_attribute_and_unknown_attribute():
    import pytest

    import facemtl

    assert facemtl.FaceAnalyzer.__name__ == "FaceAnalyzer"
    with pytest.raises(AttributeError, match="nope"):
        facemtl.nope  # noqa: B018
