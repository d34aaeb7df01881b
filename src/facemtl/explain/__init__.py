"""Explanations: Grad-CAM heat maps for every head, for one face, with the prediction's own preprocessing.

Example:
    >>> from facemtl import FaceAnalyzer
    >>> from facemtl.explain import explain_face, render_panel
    >>> res = explain_face(FaceAnalyzer.from_checkpoint(), "photo.jpg", face_index=0)
    >>> res.heatmaps["emotion"].shape, res.predictions["emotion"].label
    >>> panel = render_panel(res)          # RGB uint8: the crop, then one overlay per task
"""
from __future__ import annotations

from .face import MIN_FACE_PX, ExplainResult, explain_face, render_panel
from .gradcam import GradCAM

__all__ = ["MIN_FACE_PX", "ExplainResult", "GradCAM", "explain_face", "render_panel"]
