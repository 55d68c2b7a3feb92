"""A tiny, dependency-free metrics registry with Prometheus text rendering.

Counters and gauges with labels; nothing global: whoever needs metrics is handed a
``MetricsRegistry`` (or makes its own), and the admin app renders the one it owns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a valid metric name; use [a-zA-Z_:][a-zA-Z0-9_:]*.")
        self.name = name
        self.help = help_text
        self.labels: tuple[str, ...] = tuple(labels)
        for label in self.labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a valid label name for metric {name}.")
        self._values: dict[LabelValues, float] = {}

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(
                f"Metric {self.name} takes the labels {sorted(self.labels)}, "
                f"not {sorted(labels)}; pass exactly those."
            )
        return tuple(str(labels[name]) for name in self.labels)

    def key(self, **labels: str) -> LabelValues:
        """The checked label values, for :meth:`Counter.inc_key` on a hot path."""
        return self._key(labels)

    def value(self, **labels: str) -> float:
        """The current value for these label values (0 when never touched)."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[tuple[LabelValues, float]]:
        return sorted(self._values.items())

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        if not self.labels and not self._values:
            lines.append(f"{self.name} 0")
        for key, value in self.samples():
            if self.labels:
                inner = ",".join(
                    f'{name}="{_escape(v)}"' for name, v in zip(self.labels, key, strict=True)
                )
                lines.append(f"{self.name}{{{inner}}} {_format(value)}")
            else:
                lines.append(f"{self.name} {_format(value)}")
        return "\n".join(lines)


def _format(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class Counter(_Metric):
    """A value that only goes up."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"Counter {self.name} cannot go down (got {amount}).")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def inc_key(self, key: LabelValues) -> None:
        """Add one to the series ``key`` (made by :meth:`key`, so already checked)."""
        self._values[key] = self._values.get(key, 0.0) + 1.0


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


_M = TypeVar("_M", bound=_Metric)


class MetricSnapshot(NamedTuple):
    """One metric's values at a moment, as plain data (passed between processes)."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    samples: tuple[tuple[LabelValues, float], ...]


def merge_snapshots(groups: Iterable[Iterable[MetricSnapshot]]) -> list[MetricSnapshot]:
    """Several processes' metrics as one: the values of a series are summed (counters
    add up; so do the gauges here, which count open things). A name known with another
    kind or other labels keeps its first form; the others' values are left out."""
    merged: dict[str, tuple[MetricSnapshot, dict[LabelValues, float]]] = {}
    for group in groups:
        for snap in group:
            entry = merged.get(snap.name)
            if entry is None:
                merged[snap.name] = (snap, dict(snap.samples))
                continue
            first, values = entry
            if first.kind != snap.kind or first.labels != snap.labels:
                continue
            for key, value in snap.samples:
                values[key] = values.get(key, 0.0) + value
    return [
        first._replace(samples=tuple(sorted(values.items()))) for first, values in merged.values()
    ]


class MetricsRegistry:
    """Owns metrics by name and renders them all in the Prometheus text format.

    Other processes' metrics (relay workers) join the rendering through
    :meth:`add_source`: each source gives snapshots, summed with the own series.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._sources: list[Callable[[], Iterable[MetricSnapshot]]] = []

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return self._get_or_add(Counter, name, help_text, labels)

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        return self._get_or_add(Gauge, name, help_text, labels)

    def _get_or_add(self, cls: type[_M], name: str, help_text: str, labels: Iterable[str]) -> _M:
        existing = self._metrics.get(name)
        if existing is not None:
            if not isinstance(existing, cls) or existing.labels != tuple(labels):
                raise ValueError(
                    f"Metric {name} is already registered as a {existing.kind} with labels "
                    f"{list(existing.labels)}; use another name."
                )
            return existing
        metric = cls(name, help_text, labels)
        self._metrics[name] = metric
        return metric

    def snapshot(self) -> list[MetricSnapshot]:
        return [
            MetricSnapshot(m.name, m.kind, m.help, m.labels, tuple(m.samples()))
            for m in self._metrics.values()
        ]

    def add_source(self, source: Callable[[], Iterable[MetricSnapshot]]) -> None:
        """Render the snapshots ``source`` returns with this registry's own metrics."""
        self._sources.append(source)

    def render(self) -> str:
        """Every metric, sorted by name, as Prometheus text exposition (version 0.0.4)."""
        if not self._sources:
            return "".join(self._metrics[name].render() + "\n" for name in sorted(self._metrics))
        groups = [self.snapshot(), *(source() for source in self._sources)]
        out: list[str] = []
        for snap in sorted(merge_snapshots(groups)):
            metric = _Metric(snap.name, snap.help, snap.labels)
            metric.kind = snap.kind
            metric._values = dict(snap.samples)
            out.append(metric.render() + "\n")
        return "".join(out)
