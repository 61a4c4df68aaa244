"""Latency sampling and the product/baseline comparison row."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    n: int


def sample(fn: Callable[[], object], n: int, warmup: int = 5) -> Latency:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return Latency(p50_ms=round(statistics.median(times), 3), p95_ms=round(times[max(0, int(n * 0.95) - 1)], 3), n=n)


@dataclass
class Comparison:
    name: str
    product: dict
    baseline: dict
    ratio: float
    unit: str
    note: str = ""

    def line(self) -> str:
        if self.unit == "ms":
            p, b = self.product, self.baseline
            return (f"{self.name:<44} product p50 {p['p50_ms']:>8.2f} p95 {p['p95_ms']:>8.2f} ms | "
                    f"baseline p50 {b['p50_ms']:>8.2f} p95 {b['p95_ms']:>8.2f} ms | p95 ratio {self.ratio:>5.2f}x")
        return (f"{self.name:<44} product {self.product['value']:>10.1f} {self.unit} | baseline {self.baseline['value']:>10.1f} {self.unit} | "
                f"ratio {self.ratio:>5.2f}x")

    def to_dict(self) -> dict:
        return asdict(self)


def compare_latency(name: str, product: Latency, baseline: Latency, note: str = "") -> Comparison:
    return Comparison(name, asdict(product), asdict(baseline), round(product.p95_ms / baseline.p95_ms, 2) if baseline.p95_ms else 0.0, "ms", note)


def compare_rate(name: str, product: float, baseline: float, unit: str, note: str = "") -> Comparison:
    return Comparison(name, {"value": round(product, 1)}, {"value": round(baseline, 1)}, round(baseline / product, 2) if product else 0.0, unit, note)
