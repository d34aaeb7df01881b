"""HTTP service: ``create_app(analyzer)`` builds a FastAPI app (extra: serve).

Example:
    >>> from facemtl import FaceAnalyzer
    >>> from facemtl.serve import create_app
    >>> app = create_app(FaceAnalyzer.from_checkpoint())   # then: uvicorn.run(app, host="127.0.0.1")
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(analyzer: Any, **kwargs: Any) -> Any:
    """See :func:`facemtl.serve.app.create_app` (imported lazily so ``import facemtl.serve`` needs no FastAPI)."""
    from .app import create_app as _create_app

    return _create_app(analyzer, **kwargs)
