"""Per-track smoothing of the attribute predictions over time: :class:`AttributeSmoother` (exponential moving
average of probabilities, values and intervals)."""
from __future__ import annotations

from collections.abc import Sequence

from ..results import Prediction
from ..tasks import TaskSpec

__all__ = ["AttributeSmoother"]


class AttributeSmoother:
    """Exponential moving average of each track's predictions.

    Classification: the probabilities are averaged; the label is the arg-max of the averaged
    probabilities and the value its probability. Regression: the value (age: years) and, when present,
    its group probabilities are averaged; the label (a task with a label grouping: the age group) is the most
    probable averaged group, or the group of the averaged value.
    The first observation of a track is taken as is.
    """

    def __init__(self, tasks: Sequence[TaskSpec], alpha: float = 0.3) -> None:
        self.specs = {t.name: t for t in tasks}
        self.alpha = float(alpha)
        self._state: dict[int, dict[str, tuple[float, dict[str, float] | None, float | None, float | None]]] = {}

    def update(self, track_id: int, attributes: dict[str, Prediction]) -> dict[str, Prediction]:
        """Fold one frame's predictions into the track's average; returns new (frozen) smoothed predictions."""
        state = self._state.setdefault(track_id, {})
        a = self.alpha
        out: dict[str, Prediction] = {}
        for name, pred in attributes.items():
            prev = state.get(name)
            value, probs = float(pred.value), (dict(pred.probs) if pred.probs is not None else None)
            low, high = pred.low, pred.high
            if prev is not None:
                value = a * value + (1.0 - a) * prev[0]
                if probs is not None and prev[1] is not None:
                    probs = {k: a * p + (1.0 - a) * prev[1].get(k, p) for k, p in probs.items()}
                if low is not None and high is not None and prev[2] is not None and prev[3] is not None:
                    low, high = a * low + (1.0 - a) * prev[2], a * high + (1.0 - a) * prev[3]  # the interval too
            state[name] = (value, probs, low, high)
            spec = self.specs.get(name)
            if spec is not None and spec.kind == "classification" and probs:
                best = max(probs, key=probs.__getitem__)  # first label wins a tie, as argmax does
                out[name] = Prediction(name, best, probs[best], probs)
            else:
                label = pred.label
                if spec is not None and spec.kind == "regression" and spec.label_grouping:
                    label = spec.most_probable_group(probs) if probs else spec.group_of(value)
                out[name] = Prediction(name, label, value, probs, low, high, pred.level)
        return out

    def drop(self, track_id: int) -> None:
        """Forget an ended track."""
        self._state.pop(track_id, None)
