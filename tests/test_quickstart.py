"""The README's quick start runs as written in a fresh clone: its shell commands, on the sample photo it ships."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip().startswith("facemtl ")]


def test_the_quick_start_commands_run_as_written(tmp_path):
    commands = quick_start_commands()
    assert len(commands) == 3 and all("examples/" in c for c in commands)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # a fresh clone's files, nothing from ../shared
    outputs = []
    for cmd in commands:
        argv = [sys.executable, "-m", "facemtl", *cmd.split()[1:]]
        res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (cmd, res.stderr)
        outputs.append(res.stdout)
    assert "3 face(s)" in outputs[0] and (tmp_path / "out" / "obama_and_biden.jpg").is_file()
    doc = json.loads(outputs[1].splitlines()[0])
    assert len(doc["faces"]) == 3 and all(f["age"]["low"] < f["age"]["value"] < f["age"]["high"] for f in doc["faces"])
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["gender"] for r in rows} >= {"male"} and all(r["age_low"] for r in rows)
