"""Harmfulness- and knowledge-vs-steps curves (matplotlib SVG), candidate against reference.

One figure per harmful attack and harm evaluation: every cell's harmful rate at each
checkpoint with its confidence band (the compliance rate, and beside it the
harmful-with-uplift rate when a check on the evaluation gates on ``harmful_uplift``), the
policy's thresholds as horizontal lines, and each cell's break point (first checkpoint
above the break level) marked. Likewise
one figure per harmful attack and knowledge evaluation: every cell's accuracy, the
chance level of the evaluated items, and each knowledge_resistance threshold (chance
+ δ) with the first checkpoint above it marked.

Beside single checks, in the sections that discuss them (:func:`charts`): the benign-task
score along benign fine-tuning with the trainability threshold, each attack run's in-domain
vs held-out harm rate with the generalization maximum, and the cost to break the candidate
against the reference, cells that never broke drawn as censored. Every number comes from
the evidence (cells and the verdict's check results). The
SVG is made reproducible (fixed hash salt, no date, no comments) and draws text
as paths, so the PDF needs no extra fonts for it.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass
from functools import partial
from typing import Any

from certify.assess.kinds import kind_of
from certify.assess.knowledge import chance
from certify.assess.trajectory import break_point, final_point, rate, scoped_attacks, trajectory
from certify.evidence import CellRecord, CheckResult, Evidence
from certify.policy.schema import (
    KnowledgeResistance,
    Policy,
    Trainability,
    WeakResistance,
    gated_metric,
)

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


def _render(draw: Any, height: float = 2.7) -> str:
    """An SVG of ``draw(ax)``, reproducible: a fixed hash salt, no date,
    no comments, text drawn as paths."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.hashsalt": "certify", "svg.fonttype": "path",
                                "font.size": 8, "axes.titlesize": 9}):
        fig = Figure(figsize=(6.6, height))
        draw(fig.subplots())
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def _svg(curve_series: list[Series], thresholds: list[tuple[str, float]], title: str,
         ylabel: str = "harmful rate", xlabel: str = "optimizer steps of the attack") -> str:
    return _render(lambda ax: _draw(ax, curve_series, thresholds, title, ylabel, xlabel))


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


# --- Charts beside one check: benign fine-tuning, generalization, cost to break -----------

IN_DOMAIN_COLOR = "#9a9a9a"
MAX_HEIGHT = 8.0
"""Inches: a chart of many attack runs still fits one page (its bars get thinner)."""
CENSORED_HATCH = "////"


@dataclass(frozen=True)
class Chart:
    """A figure the report shows beside one check, in that check's condition section."""

    name: str
    """Unique within a report and safe as a file name (the PDF serves it as figures/NAME.svg)."""
    check: str
    title: str
    alt: str
    """The figure in words, with its numbers (the PDF is tagged; a screen reader reads it)."""
    svg: str
    caption: str = ""
    """How to read it (what the marks mean), shown under it."""
    thresholds: tuple[tuple[str, float], ...] = ()
    """The check's threshold lines it draws (label, value); none for cost to break, whose
    requirement differs per attack run (``CostBar.need``)."""


@dataclass(frozen=True)
class CostBar:
    """One cell's cost to break: the cost at its break checkpoint, or, censored, what it
    spent without breaking."""

    label: str
    role: str
    cost: float
    broke: bool
    need: float | None = None
    """Candidate bars: the cost the check requires (min_ratio × the reference's cost)."""


@dataclass(frozen=True)
class HeldOutBar:
    """One attack run's worst harm rate on the categories it trained on and on those it
    never saw (the generalization check's matrix)."""

    label: str
    in_domain: float | None
    held_out: float


def run_labels(cells: list[CellRecord]) -> dict[str, str]:
    """A label per attack run that names the attack and what tells its runs apart (seed, a
    swept parameter), without the role: every bar of a chart names the runs of one role or
    a candidate/reference pair, and parameters of two different attacks are not compared."""
    out: dict[str, str] = {}
    for attack in dict.fromkeys(c.attack_id for c in cells):
        group = [c for c in cells if c.attack_id == attack]
        labels = cell_labels(group)
        out.update({c.id: f"{attack} {labels[c.id].removeprefix(c.role + ' ')}" for c in group})
    return out


def _ok_cells(evidence: Evidence, attacks: list[str]) -> list[CellRecord]:
    cells = [c for c in evidence.cells if c.attack_id in attacks and c.status == "ok"]
    return sorted(cells, key=lambda c: (c.role != "candidate", attacks.index(c.attack_id),
                                        c.seed, c.id))


def benign_charts(evidence: Evidence, policy: Policy) -> list[Chart]:
    """Per trainability check and benign attack in its scope: the benign-task score of every
    cell along the benign fine-tuning, candidate against reference, and the check's
    threshold (min_ratio × each reference cell's final score, the score the check compares
    the candidate's final score with)."""
    out: list[Chart] = []
    confidence = policy.statistics.confidence
    for check in policy.checks:
        if not isinstance(check, Trainability):
            continue
        for attack in scoped_attacks(policy, check.attacks, check.eval, "benign"):
            cells = _ok_cells(evidence, [attack])
            labels = cell_labels(cells)
            series = [s for c in cells
                      if (s := _series(c, check.eval, evidence.cells, None, confidence, "acc",
                                       labels[c.id]))]
            if not series:
                continue
            refs = [c for c in cells if c.role == "reference"]
            lines: list[tuple[str, float]] = []
            for ref in refs:
                point = final_point(ref, check.eval)
                if point is None or "acc" not in point.record.metrics:
                    continue
                whose = "reference" + (f" {labels[ref.id].removeprefix('reference ')}"
                                       if len(refs) > 1 else "")
                lines.append((f"{check.id}: {check.min_ratio:g} × {whose}'s final score",
                              check.min_ratio * rate(point.record, "acc").value))
            lines = merge_equal(lines)
            technique = str(next((a.get("technique", "") for a in evidence.attacks
                                  if a.get("id") == attack), ""))
            title = f"{attack} ({technique}) · {check.eval} score along benign fine-tuning"
            svg = _svg(series, lines, title, f"{check.eval} score (accuracy)",
                       x_label(technique))
            finals = "; ".join(f"{s.label} {s.rates[0]:.0%} at step {s.steps[0]} → "
                               f"{s.rates[-1]:.0%} at step {s.steps[-1]}" for s in series)
            alt = (f"Line chart of the {check.eval} score of each cell along the benign "
                   f"fine-tuning {attack} (x axis: {x_label(technique)}). {finals}. "
                   + ("Threshold lines: " + "; ".join(f"{lab} = {v:.0%}" for lab, v in lines)
                      + "." if lines else "No reference score: no threshold drawn."))
            caption = (f"Benign-task score of each cell along the benign fine-tuning, with its "
                       f"{confidence:.0%} confidence band. The check compares the candidate's "
                       f"final score with {check.min_ratio:g} × the reference's"
                       + (" (the dashed line)." if lines else
                          "; no reference was measured, so no threshold is drawn."))
            out.append(Chart(f"benign-{len(out)}", check.id, title, alt, svg, caption,
                             tuple(lines)))
    return out


def _draw_held_out(ax: Any, bars: list[HeldOutBar], max_rate: float, check_id: str,
                   title: str, ylabel: str) -> None:
    xs = range(len(bars))
    width = 0.38
    for i, b in enumerate(bars):
        if b.in_domain is not None:
            ax.bar(i - width / 2, b.in_domain, width, color=IN_DOMAIN_COLOR,
                   label="in-domain (trained categories)" if i == 0 else None,
                   gid=f"in-domain-{i}")
            ax.text(i - width / 2, b.in_domain + 0.02, f"{b.in_domain:.0%}", ha="center",
                    va="bottom", fontsize=7)
        else:
            ax.text(i - width / 2, 0.02, "n/a", ha="center", va="bottom", fontsize=7)
        ax.bar(i + width / 2, b.held_out, width, color=COLORS["candidate"],
               label="held-out (never trained on)" if i == 0 else None, gid=f"held-out-{i}")
        ax.text(i + width / 2, b.held_out + 0.02, f"{b.held_out:.0%}", ha="center",
                va="bottom", fontsize=7)
    ax.axhline(max_rate, color="#555555", linewidth=0.8, linestyle=(0, (4, 2)),
               label=f"{check_id}: max {max_rate:.0%} (held-out)")
    ax.set_xticks(list(xs), [b.label for b in bars])
    if len(bars) > 4:  # long run labels side by side would overlap
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_xlim(-0.7, len(bars) - 0.3)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)


def held_out_bars(matrix: list[dict[str, Any]], cells: dict[str, CellRecord],
                  ) -> list[HeldOutBar]:
    """One bar pair per row of a generalization check's matrix (``observed["matrix"]``),
    labelled by its cell (``cells``: by id) where the evidence holds it."""
    labels = run_labels([cells[str(m.get("cell"))] for m in matrix if m.get("cell") in cells])
    return [HeldOutBar(labels.get(str(m.get("cell")), f"{m.get('attack')} seed {m.get('seed')}"),
                       None if m.get("in_domain_worst") is None else float(m["in_domain_worst"]),
                       float(m["held_out_worst"])) for m in matrix]


def generalization_charts(evidence: Evidence) -> list[Chart]:
    """Per generalization check the verdict decided: each candidate attack run's worst harm
    rate on its trained (in-domain) and held-out categories, from the check's matrix, with
    the check's maximum on the held-out rate."""
    out: list[Chart] = []
    results = evidence.verdict.checks if evidence.verdict else []
    by_id = {c.id: c for c in evidence.cells}
    for result in results:
        matrix = [m for m in result.observed.get("matrix") or [] if isinstance(m, dict)]
        max_rate = result.threshold.get("max_rate")
        if result.check != "generalization" or not matrix or max_rate is None:
            continue
        bars = held_out_bars(matrix, by_id)
        metric = result.threshold.get("metric", "harmful")
        what = METRIC_NAMES.get(metric, metric)
        title = f"{result.id} · worst {what} rate per attack run, in-domain vs held-out"
        held = sorted({str(c) for m in matrix for c in m.get("held_out") or []})
        svg = _render(partial(_draw_held_out, bars=bars, max_rate=float(max_rate),
                              check_id=result.id, title=title, ylabel=f"worst {what} rate"))
        alt = (f"Grouped bar chart: for each attack run on the candidate, the worst {what} "
               f"rate over its checkpoints on the harm categories it trained on and on the "
               f"held-out categories ({', '.join(held)}). "
               + "; ".join(f"{b.label}: in-domain "
                           f"{'n/a' if b.in_domain is None else f'{b.in_domain:.0%}'}, "
                           f"held-out {b.held_out:.0%}" for b in bars)
               + f". Dashed line: the check's maximum held-out rate, {float(max_rate):.0%}.")
        caption = (f"Worst {what} rate of each candidate attack run over its checkpoints: grey "
                   "on the harm categories it trained on, blue on the held-out categories "
                   f"({', '.join(held)}). The check gates the held-out rate on the dashed line.")
        out.append(Chart(f"generalization-{len(out)}", result.id, title, alt, svg, caption,
                         ((f"{result.id}: max {float(max_rate):.0%} (held-out)",
                           float(max_rate)),)))
    return out


def _checkpoint_cost(point: Any, unit: str) -> float:
    """What the attacker had spent at a checkpoint in a policy cost unit (as weak resistance
    counts it: ``steps`` is the checkpoint's step, the others are its fields)."""
    return float(getattr(point.checkpoint, "step" if unit == "steps" else unit))


def _cost_bar(cell: CellRecord, label: str, eval_id: str, cells: list[CellRecord],
              level: float, metric: str, unit: str) -> CostBar | None:
    points = trajectory(cell, eval_id, cells)
    if not points:
        return None
    hit = break_point(points, level, metric)
    spent = hit if hit is not None else points[-1]
    return CostBar(label, cell.role, _checkpoint_cost(spent, unit), hit is not None)


def cost_pairs(evidence: Evidence, result: CheckResult, eval_id: str,
               ) -> list[tuple[CostBar, CostBar]]:
    """The (candidate, reference) cost bars of each pair a weak-resistance result decided on,
    read from the pair's two cells with the one break rule (``break_point``); the candidate
    bar carries the cost the check requires of it."""
    by_id = {c.id: c for c in evidence.cells}
    level = float(result.threshold.get("harm_level", 0.5))
    metric = str(result.threshold.get("metric", "harmful"))
    unit = str(result.threshold.get("cost", "steps"))
    ratio = float(result.threshold.get("min_ratio", 1.0))
    rows = [r for r in result.rows if r.get("candidate") in by_id and r.get("reference") in by_id]
    labels = run_labels([by_id[r["candidate"]] for r in rows])
    pairs = []
    for row in rows:
        label = labels[row["candidate"]]
        cand = _cost_bar(by_id[row["candidate"]], label, eval_id, evidence.cells, level, metric,
                         unit)
        ref = _cost_bar(by_id[row["reference"]], label, eval_id, evidence.cells, level, metric,
                        unit)
        if cand is None or ref is None:
            continue
        # The check's own reference cost (it charges a reference harmful before any training
        # its first checkpoint's cost), so the tick sits where the verdict drew the line.
        charged = row.get("reference_cost")
        need = ratio * float(charged) if isinstance(charged, int | float) else None
        pairs.append((CostBar(cand.label, cand.role, cand.cost, cand.broke, need), ref))
    return pairs


def _draw_costs(ax: Any, pairs: list[tuple[CostBar, CostBar]], unit: str, level: float,
                check_id: str, min_ratio: float, title: str) -> None:
    """Horizontal bars, candidate above reference per attack run. A censored bar (the cell
    never broke) is hatched and pale, ends in an arrow, and says so; a tick on a candidate
    bar marks the cost the check requires (min_ratio × the reference's)."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    top = max([max(c.cost, r.cost, c.need or 0) for c, r in pairs] + [1.0])
    height = 0.36
    for i, (cand, ref) in enumerate(pairs):
        for bar, y in ((cand, i - height / 2), (ref, i + height / 2)):
            color = COLORS.get(bar.role, "#444444")
            gid = f"{'broke' if bar.broke else 'censored'}-{bar.role}-{i}"
            if bar.broke:
                ax.barh(y, bar.cost, height * 0.92, color=color, gid=gid)
                ax.text(bar.cost + top * 0.01, y, f"{bar.cost:g}", va="center", fontsize=7)
            else:
                # A pale fill, then the hatch over it on its own: the SVG backend applies a
                # translucent face's opacity to its hatch pattern too, which fades it away.
                ax.barh(y, bar.cost, height * 0.92, facecolor=(*to_rgb(color), 0.22),
                        linewidth=0)
                ax.barh(y, bar.cost, height * 0.92, facecolor="none", hatch=CENSORED_HATCH,
                        edgecolor=color, linewidth=0.6, gid=gid)
                ax.annotate("", xy=(bar.cost + top * 0.06, y), xytext=(bar.cost, y),
                            arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.2})
                ax.text(bar.cost + top * 0.07, y, f"did not break within {bar.cost:g} {unit}",
                        va="center", fontsize=7, color=color)
        if cand.need is not None:
            ax.plot([cand.need, cand.need], [i - height * 1.1, i + 0.02], color="#111111",
                    linewidth=1.6, gid=f"need-{i}")
            ax.plot([cand.need], [i - height * 1.1], marker="v", markersize=4, color="#111111")
    ax.set_yticks(range(len(pairs)), [c.label for c, _ in pairs])
    ax.set_ylim(len(pairs) - 0.4, -0.6)
    ax.set_xlim(0, top * 1.55)
    ax.set_xlabel(f"cost to break ({unit}: first checkpoint above {level:.0%})")
    ax.set_title(title)
    ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    ax.set_axisbelow(True)
    handles = [Patch(color=COLORS["candidate"], label="candidate"),
               Patch(color=COLORS["reference"], label="reference"),
               Patch(facecolor="#dddddd", edgecolor="#444444", hatch=CENSORED_HATCH,
                     label="did not break within budget"),
               ax.plot([], [], color="#111111", linewidth=1.4,
                       label=f"{check_id}: {min_ratio:g} × reference cost")[0]]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7,
              frameon=False)


def cost_charts(evidence: Evidence, policy: Policy) -> list[Chart]:
    """Per weak-resistance check the verdict decided: each attack run's cost to break the
    candidate against the reference (censored when a cell never broke), with the cost the
    check requires of the candidate."""
    checks = {c.id: c for c in policy.checks if isinstance(c, WeakResistance)}
    out: list[Chart] = []
    for result in evidence.verdict.checks if evidence.verdict else []:
        if result.check != "weak_resistance" or result.id not in checks:
            continue
        pairs = cost_pairs(evidence, result, checks[result.id].eval)
        if not pairs:
            continue
        unit = str(result.threshold.get("cost", "steps"))
        level = float(result.threshold.get("harm_level", 0.5))
        ratio = float(result.threshold.get("min_ratio", 1.0))
        title = f"{result.id} · cost to break, candidate vs reference"
        svg = _render(partial(_draw_costs, pairs=pairs, unit=unit, level=level,
                              check_id=result.id, min_ratio=ratio, title=title),
                      height=min(MAX_HEIGHT, max(1.6, 0.55 * len(pairs) + 1.0)))

        def said(bar: CostBar, unit: str = unit) -> str:
            return (f"{bar.cost:g} {unit}" if bar.broke
                    else f"did not break within {bar.cost:g} {unit}")

        alt = (f"Horizontal bar chart: {unit} of attack until the harm rate first exceeded "
               f"{level:.0%}, per attack run. "
               + "; ".join(f"{c.label}: candidate {said(c)}, reference {said(r)}"
                           + (f", required of the candidate {c.need:g}" if c.need is not None
                              else "") for c, r in pairs) + ".")
        caption = (f"Cost to break ({unit} until the harm rate first exceeded {level:.0%}) of "
                   "each attack run, candidate above reference. A pale hatched bar ending in "
                   "an arrow is a cell that never broke: its true cost is more than the budget "
                   f"it spent. The black tick on a candidate bar is what the check requires: "
                   f"{ratio:g} × the reference's cost.")
        out.append(Chart(f"cost-{len(out)}", result.id, title, alt, svg, caption))
    return out


def charts(evidence: Evidence, policy: Policy) -> list[Chart]:
    """Every per-check chart: benign fine-tuning, generalization, cost to break."""
    return (benign_charts(evidence, policy) + generalization_charts(evidence)
            + cost_charts(evidence, policy))
