"""Prometheus text metrics without a dependency: counters and gauges with labels.

One :class:`Registry` per process is created by ``sipsgate run`` and handed to every
part that counts something (the admin endpoint, later the connector and the relay).
:meth:`Registry.render` produces the text exposition format, version 0.0.4.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a valid metric name")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a valid label name")
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(
                f"metric {self.name} takes labels {', '.join(self.labels) or '(none)'}, "
                f"not {', '.join(sorted(labels)) or '(none)'}"
            )
        return tuple(str(labels[name]) for name in self.labels)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[tuple[LabelValues, float]]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labels:
            items = [((), 0.0)]
        return items

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for key, value in self.samples():
            if key:
                pairs = ",".join(
                    f'{n}="{_escape_label(v)}"' for n, v in zip(self.labels, key, strict=True)
                )
                yield f"{self.name}{{{pairs}}} {_format_value(value)}"
            else:
                yield f"{self.name} {_format_value(value)}"


class Counter(_Metric):
    """A value that only goes up (requests served, handshakes by rule)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that goes up and down, set directly or read from a callback at render."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        callback: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        if callback is not None and labels:
            raise ValueError("a gauge with a callback has no labels")
        self._callback = callback

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def samples(self) -> list[tuple[LabelValues, float]]:
        if self._callback is not None:
            return [((), float(self._callback()))]
        return super().samples()


class Registry:
    """The metrics of one process, rendered together for ``GET /metrics``."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _register(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, labels)
        self._register(metric)
        return metric

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        callback: Callable[[], float] | None = None,
    ) -> Gauge:
        metric = Gauge(name, help_text, labels, callback=callback)
        self._register(metric)
        return metric

    def get(self, name: str) -> _Metric | None:
        with self._lock:
            return self._metrics.get(name)

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
