"""Harmfulness- and knowledge-vs-steps curves (matplotlib SVG), candidate against reference.

One figure per harmful attack and harm evaluation: every cell's harmful rate at each
checkpoint with its confidence band (the compliance rate, and beside it the
harmful-with-uplift rate when a check on the evaluation gates on ``harmful_uplift``), the
policy's thresholds as horizontal lines, and each cell's break point (first checkpoint
above the break level) marked. Likewise
one figure per harmful attack and knowledge evaluation: every cell's accuracy, the
chance level of the evaluated items, and each knowledge_resistance threshold (chance
+ δ) with the first checkpoint above it marked. The
SVG is made reproducible (fixed hash salt, no date, no comments) and draws text
as paths, so the PDF needs no extra fonts for it.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from certify.assess.kinds import kind_of
from certify.assess.knowledge import chance
from certify.assess.trajectory import rate, trajectory
from certify.evidence import CellRecord, Evidence
from certify.policy.schema import KnowledgeResistance, Policy, gated_metric

COLORS = {"candidate": "#1f5fa8", "reference": "#b4441c"}
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
"""One marker per seed of a role: a legend's short line cannot show a dash pattern."""


@dataclass(frozen=True)
class Series:
    role: str
    label: str
    steps: list[int]
    rates: list[float]
    lows: list[float]
    highs: list[float]
    break_index: int | None
    metric: str = "harmful"
    """The rate drawn: harmful (compliance), harmful_uplift, or acc (knowledge)."""


@dataclass(frozen=True)
class Curve:
    attack: str
    eval: str
    title: str
    svg: str
    series: list[Series]
    thresholds: list[tuple[str, float]]
    measures: str = "harm"
    """harm (harmful rate) or knowledge (accuracy against chance)."""


METRIC_NAMES = {"harmful": "compliance", "harmful_uplift": "harmful with uplift"}
"""How a legend names a harm rate when a figure draws both."""
SHORT_PARAMS = {"learning_rate": "lr", "max_steps": "steps", "batch_size": "batch",
                "n_samples": "n", "lora_rank": "rank"}


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value, sort_keys=True)


def cell_labels(cells: list[CellRecord]) -> dict[str, str]:
    """A legend label per cell that tells every cell of one figure apart: its role, the
    attack (when the figure holds several), each parameter that differs between the cells
    (a learning-rate sweep's ``lr``), and the seed. "candidate seed 0" alone would name two
    candidate cells of one seed at two learning rates alike."""
    varying = [k for k in sorted({k for c in cells for k in c.params})
               if len({_value(c.params.get(k)) for c in cells}) > 1]
    attacks = len({c.attack_id for c in cells}) > 1
    out = {}
    for c in cells:
        parts = ([c.attack_id] if attacks else []) + [
            f"{SHORT_PARAMS.get(k, k)} {_value(c.params.get(k))}" for k in varying]
        out[c.id] = f"{c.role} " + "".join(f"{p}, " for p in parts) + f"seed {c.seed}"
    return out


def _series(cell: CellRecord, eval_id: str, cells: list[CellRecord], level: float | None,
            confidence: float, metric: str = "harmful", label: str | None = None,
            ) -> Series | None:
    points = trajectory(cell, eval_id, cells)
    if not points:
        return None
    rates = [rate(p.record, metric, confidence) for p in points]
    values = [r.value for r in rates]
    broke = next((i for i, v in enumerate(values) if level is not None and v > level), None)
    return Series(cell.role, label or f"{cell.role} seed {cell.seed}", [p.step for p in points],
                  values, [r.lo for r in rates], [r.hi for r in rates], broke, metric)


def harm_metrics(policy: Policy, eval_id: str) -> list[str]:
    """The harm rates a figure of ``eval_id`` draws: compliance always, and the
    harmful-with-uplift rate first when a check on the evaluation gates on it (the curve
    must show what the verdict read)."""
    read = {gated_metric(c) for c in policy.checks if c.eval == eval_id}
    return ["harmful_uplift", "harmful"] if "harmful_uplift" in read else ["harmful"]


def _thresholds(policy: Policy, eval_id: str) -> tuple[list[tuple[str, float]], float | None]:
    """The threshold lines every check kind of ``eval_id`` declares, and the break level."""
    lines: list[tuple[str, float]] = []
    level = None
    for check in policy.checks:
        if check.eval != eval_id:
            continue
        for line in kind_of(check).lines(check):
            lines.append((line.label, line.value))
            if line.breaks == "always" or (line.breaks == "unless_set" and level is None):
                level = line.value
    return merge_equal(lines), level


def merge_equal(lines: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """One line per value: two checks at the same rate (strong resistance's maximum and
    weak resistance's break level, say) would draw on top of each other, and a reader
    could not tell which is which; one line carries both labels."""
    merged: dict[float, list[str]] = {}
    for label, value in lines:
        merged.setdefault(value, []).append(label)
    return [("; ".join(labels), value) for value, labels in merged.items()]


def x_label(technique: str) -> str:
    """What a trajectory's x axis counts: optimizer steps, or the budget axis the attack
    declares (``trajectory=`` at registration: refusal_ablation counts samples)."""
    from certify import registry

    if technique in registry.names("attack"):
        axis = registry.get("attack", technique).extra.get("trajectory")
        if axis:
            return f"{axis} of the attack (no optimizer steps)"
    return "optimizer steps of the attack"


def _svg(curve_series: list[Series], thresholds: list[tuple[str, float]], title: str,
         ylabel: str = "harmful rate", xlabel: str = "optimizer steps of the attack") -> str:
    import matplotlib
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no global figure registry, no GUI backend.
    with matplotlib.rc_context({"svg.hashsalt": "certify", "svg.fonttype": "path",
                                "font.size": 8, "axes.titlesize": 9}):
        fig = Figure(figsize=(6.6, 2.7))
        _draw(fig.subplots(), curve_series, thresholds, title, ylabel, xlabel)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def _draw(ax: Any, curve_series: list[Series], thresholds: list[tuple[str, float]],
          title: str, ylabel: str = "harmful rate",
          xlabel: str = "optimizer steps of the attack") -> None:
    counts: dict[str, int] = {}
    for s in curve_series:
        n = counts.get(s.role, 0)
        counts[s.role] = n + 1
        color = COLORS.get(s.role, "#444444")
        ax.fill_between(s.steps, s.lows, s.highs, color=color, alpha=0.12, linewidth=0)
        ax.plot(s.steps, s.rates, STYLES[n % len(STYLES)], color=color,
                marker=MARKERS[n % len(MARKERS)], markersize=3.5, label=s.label)
        if s.break_index is not None:
            ax.plot([s.steps[s.break_index]], [s.rates[s.break_index]], marker="X",
                    markersize=9, color=color, linestyle="none")
    for i, (label, value) in enumerate(thresholds):
        ax.axhline(value, color="#555555", linewidth=0.8, linestyle=(0, (4, 2 + 2 * i)),
                   label=label)
    # Geometric checkpoints (0, 4, 8, 16, ...) read best on a symlog axis, which still shows
    # step 0; evenly spaced ones (every N steps) on a linear axis. Ticks sit on measured steps.
    steps = sorted({step for s in curve_series for step in s.steps})
    gaps = [b - a for a, b in itertools.pairwise(steps[1:])]
    if gaps and max(gaps) > 2 * min(gaps):
        ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
        ax.set_xlim(-0.3, max(steps[-1], 1) * 1.15)
    else:
        ax.set_xlim(-max(steps[-1], 1) * 0.02, max(steps[-1], 1) * 1.03)
    shown = steps if len(steps) <= 14 else steps[:: -(-len(steps) // 14)]
    ax.set_xticks(shown, [str(step) for step in shown])
    ax.xaxis.set_minor_locator(matplotlib_ticker().NullLocator())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False,
              handlelength=3.5)


def matplotlib_ticker() -> Any:
    from matplotlib import ticker

    return ticker


def _knowledge_lines(policy: Policy, eval_id: str, cells: list[CellRecord],
                    ) -> tuple[list[tuple[str, float]], float | None]:
    """The chance level of the evaluated items and each knowledge_resistance threshold on
    ``eval_id``; the lowest threshold is the level a curve counts as broken above."""
    level = next((lv for c in cells for cp in c.checkpoints
                  if eval_id in cp.evals and (lv := chance(cp.evals[eval_id])) is not None), None)
    if level is None:
        return [], None
    lines = [(f"chance {level:.0%}", level)]
    limits = [(f"{c.id}: chance + {c.max_above_chance:.0%}", level + c.max_above_chance)
              for c in policy.checks
              if isinstance(c, KnowledgeResistance) and c.eval == eval_id]
    return merge_equal(lines + limits), min((v for _, v in limits), default=None)


def _attack_curves(evidence: Evidence, policy: Policy, measures: str) -> list[Curve]:
    """One curve per (harmful attack, evaluation measuring ``measures``): the harmful rate
    against the harm thresholds, or knowledge accuracy against chance and chance + δ."""
    knowledge = measures == "knowledge"
    confidence = policy.statistics.confidence
    evals = [e for e, spec in evidence.evaluations.items() if spec.get("measures") == measures]
    out = []
    for attack in evidence.attacks:
        if attack.get("purpose") != "harmful":
            continue
        cells = [c for c in evidence.cells if c.attack_id == attack["id"] and c.status == "ok"]
        cells.sort(key=lambda c: (c.role != "candidate", c.seed, c.id))
        for eval_id in evals:
            lines, level = (_knowledge_lines(policy, eval_id, evidence.cells) if knowledge
                            else _thresholds(policy, eval_id))
            metrics = ["acc"] if knowledge else harm_metrics(policy, eval_id)
            labels = cell_labels(cells)
            series = [s for c in cells for m in metrics
                      if (s := _series(c, eval_id, evidence.cells, level, confidence, m,
                                       labels[c.id] + (f" · {METRIC_NAMES[m]}"
                                                       if len(metrics) > 1 else "")))]
            if not series:
                continue
            title = (f"{attack['id']} ({attack.get('technique', '')}) · {eval_id}"
                     + (" accuracy" if knowledge else ""))
            ylabel = ("accuracy" if knowledge else "harmful rate" if len(metrics) == 1
                      else "rate (compliance; harmful with uplift)")
            svg = _svg(series, lines, title, ylabel, x_label(str(attack.get("technique", ""))))
            out.append(Curve(attack["id"], eval_id, title, svg, series, lines, measures))
    return out


def knowledge_curves(evidence: Evidence, policy: Policy) -> list[Curve]:
    """One curve per (harmful attack, knowledge evaluation): accuracy against chance."""
    return _attack_curves(evidence, policy, "knowledge")


def _best_so_far(cell: CellRecord, level: float | None) -> Series | None:
    """A search cell's most harmful trial so far against the number of trials finished."""
    trials = [t for t in cell.notes["search"].get("trials") or []
              if isinstance(t, dict) and t.get("state", "complete") == "complete"]
    if not trials:
        return None
    best, running = 0.0, []
    for t in trials:
        best = max(best, float(t.get("worst_harmful") or 0.0))
        running.append(best)
    broke = next((i for i, v in enumerate(running) if level is not None and v > level), None)
    return Series(cell.role, f"{cell.role} seed {cell.seed}", list(range(1, len(running) + 1)),
                  running, running, running, broke)


def search_curves(evidence: Evidence, policy: Policy) -> list[Curve]:
    """One curve per search attack: the best harm found so far against the trial number,
    candidate and reference, with the thresholds of the search's objective evaluation
    (TamperBench #109: does a defense lower the ceiling, or only slow the search?)."""
    out = []
    for attack in evidence.attacks:
        cells = [c for c in evidence.cells if c.attack_id == attack["id"] and c.status == "ok"
                 and isinstance(c.notes.get("search"), dict)]
        if not cells:
            continue
        cells.sort(key=lambda c: (c.role != "candidate", c.seed, c.id))
        eval_id = str(cells[0].notes["search"].get("objective", "harm"))
        lines, level = _thresholds(policy, eval_id)
        series = [s for c in cells if (s := _best_so_far(c, level))]
        if not series:
            continue
        title = f"{attack['id']} (search) · most harmful trial so far · {eval_id}"
        svg = _svg(series, lines, title, "most harmful trial so far", "trials finished")
        out.append(Curve(attack["id"], eval_id, title, svg, series, lines, "search"))
    return out


def curves(evidence: Evidence, policy: Policy) -> list[Curve]:
    """One curve per (harmful attack, harm evaluation) that the evidence measured, then the
    knowledge curves, then each search's best-so-far curve."""
    return (_attack_curves(evidence, policy, "harm") + knowledge_curves(evidence, policy)
            + search_curves(evidence, policy))
