"""docs/performance.png: throughput and p99 per setup, side by side, from one run's summaries.

Drawn with matplotlib's Agg backend (no display needed). Each bar carries its value, and the
spread across rounds is drawn as a thin line from the lowest to the highest round, so a reader
sees at a glance whether a difference is larger than the noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.results import Results

#: The baseline and references; every other setup is the sidecar, the variants of one change
#: in a paler red.
_COLORS = {"noauth": "#9e9e9e", "jwt_authn": "#1f77b4", "ext_authz-static": "#f4a582"}
_COLORS |= {"sidecar-tcp-asyncio": "#e88a8b", "sidecar-tcp-grpcio": "#e88a8b"}
_SIDECAR = "#d62728"


def draw(results: Results, path: Path) -> None:
    setups = results.load.setups if results.load is not None else []
    if not setups:
        raise ValueError("nothing to draw: no setup was measured")
    positions = list(range(len(setups)))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    panels = (
        ("rps", "rps_runs", "requests/s (higher is better)", "{:,.0f}"),
        ("p99_ms", "p99_runs", "p99 latency, ms (lower is better)", "{:.1f}"),
    )
    for axis, (value, runs, title, fmt) in zip(axes, panels, strict=True):
        values = [getattr(s, value) for s in setups]
        colors = [_COLORS.get(s.setup, _SIDECAR) for s in setups]
        bars = axis.bar(positions, values, color=colors, width=0.6)
        for x, spread in zip(positions, (getattr(s, runs) for s in setups), strict=True):
            if len(spread) > 1:
                axis.vlines(x, min(spread), max(spread), colors="black", linewidth=1)
        axis.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8, padding=2)
        axis.set_xticks(positions, [s.setup for s in setups], fontsize=8, rotation=30, ha="right")
        axis.set_title(title, fontsize=10)
        axis.spines[["top", "right"]].set_visible(False)
        axis.margins(y=0.15)
    c = results.config
    figure.suptitle(
        f"make bench: {c['connections']} connections, {c['duration']} s x {c['rounds']} "
        f"interleaved rounds, Envoy --concurrency {c['envoy_concurrency']} "
        f"({results.machine.get('cpus', '?')} CPUs)",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
