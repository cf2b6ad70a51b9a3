"""How a check's numbers read in a table: observed value, threshold, detail rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certify.evidence import CheckResult
from certify.report.text import interval, num, one_line, pct, scalar, signed_interval

MAX_ROWS = 24
SKIP_KEYS = ("dataset", "confusion", "outcomes")


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    more: int
    order: str = ""


def _rate_text(point: dict[str, Any]) -> str:
    where = []
    if point.get("attack") is not None:
        where.append(f"{point['attack']} seed {point.get('seed')}")
    if point.get("step") is not None:
        where.append(f"step {point['step']}")
    suffix = f" ({', '.join(where)})" if where else ""
    return (f"{pct(point.get('rate'))} {interval(point.get('ci'))} n={point.get('n')}{suffix}"
            + _top_level_text(point.get("top_level")))


def _top_level_text(top: Any) -> str:
    """The share of all answers at the judge's highest harm level (uplift), beside the
    rate: a compliance rate alone hides how much of it was partial."""
    if not isinstance(top, dict):
        return ""
    return f"; at the judge's top level (uplift) {pct(top.get('rate'))} {interval(top.get('ci'))}"


def observed_text(check: CheckResult) -> str:
    obs = check.observed
    if obs.get("aggregation") == "top_n_mean":
        return (f"mean of the {len(obs.get('cells') or [])} most harmful cells "
                f"{pct(obs.get('rate'))} {interval(obs.get('ci'))} n={obs.get('n')}"
                + _top_level_text(obs.get("top_level")))
    point = obs.get("worst") or obs.get("best")
    if obs.get("aggregation") == "bounded_worst" and isinstance(point, dict):
        return _rate_text(point) + " (capability-bounded)"
    if check.check == "trainability" and isinstance(point, dict) and "candidate" in point:
        # A ratio of benign-task scores, not of costs: trainability reads no cost.
        return (f"score ratio {scalar('ratio', point.get('ratio'))} (candidate "
                f"{scalar('candidate', point['candidate'])}, reference "
                f"{scalar('reference', point.get('reference'))}; "
                f"{point.get('attack')} seed {point.get('seed')})")
    if isinstance(point, dict) and "ratio" in point:
        sign = "≥" if point.get("censored") else "="
        return f"cost ratio {sign} {scalar('ratio', point['ratio'])} ({point.get('attack')})"
    if isinstance(point, dict) and "accuracy" in point:
        return (f"accuracy {pct(point['accuracy'])} {interval(point.get('ci'))} "
                f"n={point.get('n')} ({point.get('judge')})")
    if isinstance(point, dict) and "rate" in point:
        return _rate_text(point)
    if "difference" in obs:
        return (f"Δ {scalar('difference', obs['difference'])} {signed_interval(obs.get('ci'))} "
                f"(candidate {num(obs.get('candidate'))}, reference {num(obs.get('reference'))})")
    if "missing" in obs:
        return f"missing: {one_line(obs['missing'], 120)}"
    censored = obs.get("censored")
    if isinstance(censored, dict) and check.threshold.get("decide_on") == "censored_median":
        unit = str(censored.get("unit", "steps"))
        return (f"median cost to break: candidate {_median_text(censored.get('candidate'), unit)}"
                f"; reference {_median_text(censored.get('reference'), unit)}")
    return "—"


_THRESHOLD_TEXT = {
    "max_rate": lambda v: f"rate ≤ {pct(v)}",
    "min_rate": lambda v: f"rate ≥ {pct(v)}",
    "min_ratio": lambda v: f"ratio ≥ {num(v, 2)}×",
    "harm_level": lambda v: f"broken above {pct(v)}",
    "limit": lambda v: f"≤ {num(v)}",
    "per_task": lambda v: f"per task ≤ {num(v)}",
    "min_accuracy": lambda v: f"accuracy ≥ {pct(v)}",
    "bound": lambda v: f"{v} CI bound",
    "cost": lambda v: f"cost in {v}",
    "metric": lambda v: f"metric {v}",
    "on": lambda v: f"on the {v}",
    "max_above_chance": lambda v: f"accuracy ≤ chance + {pct(v)}",
    "chance": lambda v: f"chance {pct(v)}",
    "threshold": lambda v: f"= {pct(v)}",
}


def threshold_text(check: CheckResult) -> str:
    parts = []
    for key, value in check.threshold.items():
        fmt = _THRESHOLD_TEXT.get(key)
        parts.append(fmt(value) if fmt else f"{key} {scalar(key, value)}")
    return one_line("; ".join(parts), 200) or "—"


def _columns(rows: list[dict[str, Any]], cell_ids: set[str]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key in columns or key in SKIP_KEYS or isinstance(value, dict):
                continue
            columns.append(key)
    # Cell ids are long and listed in the methodology; attack and seed identify the row.
    return [c for c in columns
            if not all(isinstance(r.get(c), str) and r.get(c) in cell_ids for r in rows)]


def detail_table(check: CheckResult, cell_ids: set[str]) -> Table | None:
    rows = check.rows
    if not rows:
        return None
    columns = _columns(rows, cell_ids)
    rates = any(k in rows[0] for k in ("rate", "accuracy"))
    if len(rows) > MAX_ROWS and "rate" in columns:
        # Too many to list: the highest rates are the ones that decide the check.
        rows = sorted(rows, key=lambda r: -(r.get("rate") or 0.0))
    body = [[scalar(c, row.get(c), rates=rates) for c in columns] for row in rows[:MAX_ROWS]]
    return Table([c.replace("_", " ") for c in columns], body, max(0, len(rows) - MAX_ROWS),
                 "highest rates first" if len(rows) > MAX_ROWS and "rate" in columns else "")


MATRIX_COLUMNS = ["attack", "seed", "trained on (in-domain)", "held out", "worst in-domain rate",
                  "worst held-out rate"]


def held_out_matrix(check: CheckResult) -> tuple[str, Table] | None:
    """A generalization check's in-domain vs held-out matrix: per attack run, the harm
    categories it trained on and those it never saw, with the worst rate on each; and a
    sentence naming the held-out categories. None for any other check."""
    matrix = check.observed.get("matrix")
    if check.check != "generalization" or not isinstance(matrix, list):
        return None
    entries = [m for m in matrix if isinstance(m, dict)]
    if not entries:
        return None
    held: list[str] = []
    for m in entries:
        held += [str(c) for c in m.get("held_out") or [] if str(c) not in held]
    rows = [[one_line(m.get("attack"), 60), one_line(m.get("seed"), 12),
             one_line(", ".join(map(str, m.get("trained") or [])), 200),
             one_line(", ".join(map(str, m.get("held_out") or [])), 200),
             pct(m.get("in_domain_worst")), pct(m.get("held_out_worst"))]
            for m in entries]
    sentence = one_line(f"Held-out categories (left out of the attack runs' training data): "
                        f"{', '.join(held) or 'none'}. The held-out rate decides the check; "
                        "the in-domain rate beside it shows how far the attack transferred.",
                        600)
    return sentence, Table(MATRIX_COLUMNS, rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS))


def _median_text(m: dict[str, Any] | None, unit: str) -> str:
    if not isinstance(m, dict):
        return "—"
    median = "not reached" if m.get("median") is None else f"{num(m['median'])} {unit}"
    lo, hi = ("∞" if v is None else num(v) for v in (m.get("ci") or [None, None]))
    return (f"{median} [{lo}, {hi}] ({num(m.get('broke'))} of {num(m.get('n'))} cells broke, "
            f"{num(m.get('censored'))} censored)")


def check_notes(check: CheckResult) -> list[str]:
    """Sentences a check's numbers need beside its row: the censored cost to break and the
    search cost (weak resistance), what a capability bound left out (bounded worst)."""
    obs, notes = check.observed, []
    censored = obs.get("censored")
    if isinstance(censored, dict):
        unit = str(censored.get("unit", "steps"))
        ratio = censored.get("median_ratio")
        cand, ref = (_median_text(censored.get(r), unit) for r in ("candidate", "reference"))
        notes.append(one_line(
            f"{check.id}: Kaplan–Meier median cost to break (cells that never broke are "
            f"right-censored at their budget): candidate {cand}; reference {ref}"
            + (f"; median ratio {num(ratio, 2)}×" if ratio is not None else "") + ".", 600))
    area = obs.get("harm_area")
    if isinstance(area, dict) and area:
        notes.append(f"{check.id}: normalised area under the harm curve, (1/T)∫harm dt: "
                     + "; ".join(f"{role} {pct(v)}" for role, v in area.items()) + ".")
    search = obs.get("search_cost")
    if isinstance(search, dict):
        parts = [f"{role}: {'broke at trial ' + num(s['trials']) + ' after ' + num(s['steps'])}"
                 f" steps summed over trials" if s.get("broke") else
                 f"{role}: no trial broke in {num(s.get('trials'))} trials "
                 f"({num(s.get('steps'))} steps)"
                 for role, cells in search.items() for s in cells]
        notes.append(f"{check.id}: search cost to break (trials, then steps summed over "
                     f"trials, until a trial first crossed the break level): "
                     + "; ".join(parts) + ".")
    excluded = obs.get("excluded")
    if obs.get("aggregation") == "bounded_worst" and isinstance(excluded, list) and excluded:
        incoherent = [e for e in excluded if e.get("label") == "incoherent"]
        worst = max(incoherent, key=lambda e: e.get("rate") or 0.0, default=None)
        notes.append(one_line(
            f"{check.id}: {num(len(excluded))} checkpoint(s) lost confidently more than "
            f"{pct(obs.get('epsilon'))} of the unattacked {obs.get('capability_eval')} "
            f"{pct(obs.get('capability_baseline'))} (the drop's "
            + (f"{obs['confidence']:.0%} " if isinstance(obs.get("confidence"), int | float)
               else "") + "interval lies above it) and are "
            "not the worst case"
            + (f"; the most harmful of them, harmful but incoherent: {pct(worst.get('rate'))} "
               f"at {worst.get('attack')} seed {worst.get('seed')} step {worst.get('step')} "
               f"(capability {pct(worst.get('capability'))})" if worst else "") + ".", 600))
    unmeasured = obs.get("unmeasured")
    if obs.get("aggregation") == "bounded_worst" and isinstance(unmeasured, list) and unmeasured:
        notes.append(one_line(
            f"{check.id}: {num(len(unmeasured))} checkpoint(s) have no "
            f"{obs.get('capability_eval')} measurement and count toward the worst case "
            "(nothing shows them incoherent).", 300))
    return notes
