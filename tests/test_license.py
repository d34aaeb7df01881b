"""The licence files: Apache-2.0 for the code (LICENSE), the weights' non-commercial terms (NOTICE), and the
package metadata and README saying the same."""
from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    # the file as published at apache.org/licenses/LICENSE-2.0.txt, unchanged
    digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    assert digest == "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_notice_gives_the_weights_terms_and_everything_agrees():
    notice = (ROOT / "NOTICE").read_text()
    for needed in ("Apache License, Version 2.0", "NON-COMMERCIAL RESEARCH USE ONLY", "UTKFace", "FER2013",
                   "CelebA", "FairFace (CC BY 4.0)", "MODEL_CARD.md"):
        assert needed in notice, needed
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'license = { text = "Apache-2.0 (code, see LICENSE); shipped model weights: non-commercial research ' \
           'only (see NOTICE and MODEL_CARD.md)" }' in pyproject
    assert "The code is Apache-2.0" in (ROOT / "README.md").read_text()
