"""The Dockerfile: lint-level checks of what it builds, and its build context; a real build where Docker runs."""
from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def context_files() -> list[Path]:
    """The files `docker build .` sends, by the .dockerignore rules (last matching rule wins; ! re-includes)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [r.strip() for r in lines if r.strip() and not r.startswith("#")]
    kept = []
    for path in ROOT.rglob("*"):
        if not path.is_file() or ".git" in path.parts:
            continue
        rel = path.relative_to(ROOT).as_posix()
        keep = True
        for rule in rules:
            neg, pat = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/") or fnmatch.fnmatch(rel, pat + "/*"):
                keep = neg
        if keep:
            kept.append(path)
    return kept


def test_dockerfile_is_a_cpu_inference_service_without_torch():
    ins = instructions()
    words = [w for w, _ in ins]
    assert words[0] == "FROM" and ins[0][1].startswith("python:3.11")
    assert {"USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT"} <= set(words)
    run = " ".join(rest for w, rest in ins if w == "RUN")
    assert 'pip install ".[serve]"' in run and "torch" not in run and "[dev]" not in run and "[train]" not in run
    assert dict(ins)["USER"] != "root"
    entry = dict(ins)["ENTRYPOINT"]
    assert '"facemtl", "serve"' in entry and '"0.0.0.0"' in entry
    assert "/health" in dict(ins)["HEALTHCHECK"]
    for w, rest in ins:
        if w == "COPY":
            *sources, _dest = shlex.split(rest)
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


def test_build_context_holds_the_package_and_its_weights_only():
    files = context_files()
    rel = {p.relative_to(ROOT).as_posix() for p in files}
    assert "pyproject.toml" in rel and "src/facemtl/weights/catalogue.json" in rel
    assert "src/facemtl/weights/default_lite0_112.int8.onnx" in rel
    assert not [r for r in rel if r.startswith(("tests/", "benchmarks/", "recipes/", "runs/"))]
    assert sum(p.stat().st_size for p in files) < 60e6


@pytest.mark.slow
def test_docker_build(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon here")
    res = subprocess.run([docker, "build", "-q", "-t", "facemtl-test", str(ROOT)], capture_output=True, text=True,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-2000:]
