"""Methodology, environment and digest-index sections of the report view-model."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from certify.evidence import CellRecord, Evidence
from certify.policy.schema import Policy
from certify.registry import budget_unit
from certify.report.text import num, one_line, pct, short_digest


@dataclass(frozen=True)
class AttackLine:
    id: str
    technique: str
    purpose: str
    summary: str
    paper: str
    params: str
    budget: str
    seeds: str
    models: str


@dataclass(frozen=True)
class JudgeLine:
    eval: str
    name: str
    version: str
    weights: str
    validated_on: str
    n: str
    accuracy: str
    fpr: str
    fnr: str
    confusion: str
    agreement: str = "—"
    """Agreement per label (uplift labels at the four-way grain), e.g. "compliant 100%"."""


@dataclass(frozen=True)
class Methodology:
    threat_model: list[tuple[str, str]]
    attacks: list[AttackLine]
    cells: list[list[str]]
    evaluations: list[tuple[str, str, str, str]]
    judges: list[JudgeLine]
    datasets: list[tuple[str, str, str, str]]
    statistics: list[tuple[str, str]]
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    """(check id, kind, how the kind decides): each kind's schema docstring."""
    licence: str | None = None
    """The licence every dataset shares, said once instead of in a column repeating it."""


def _common_licence(datasets: list[dict[str, Any]]) -> str | None:
    licences = {one_line(d.get("licence") or "—", 120) for d in datasets}
    return licences.pop() if len(datasets) > 1 and len(licences) == 1 else None


CELL_COLUMNS = ["cell", "role", "attack", "seed", "status", "progress", "early stop", "seconds",
                "tokens", "FLOP"]


def _kv(mapping: dict[str, Any], limit: int = 300) -> str:
    parts = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            value = value.get("source") or value.get("name") or "{…}"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key}={value if isinstance(value, str) else num(value)}")
    return one_line("; ".join(parts), limit) or "—"


def _attack(a: dict[str, Any]) -> AttackLine:
    return AttackLine(one_line(a.get("id"), 80), one_line(a.get("technique"), 40),
                      one_line(a.get("purpose"), 20), one_line(a.get("summary", ""), 300),
                      one_line(a.get("paper") or "—", 200), _kv(a.get("params", {})),
                      _kv(a.get("budget", {})), one_line(", ".join(map(str, a.get("seeds", []))),
                                                          80),
                      one_line(", ".join(a.get("models", [])), 80))


def _cell(c: CellRecord) -> list[str]:
    last = c.checkpoints[-1] if c.checkpoints else None
    status = c.status if c.error is None else f"{c.status}: {c.error.kind}"
    stop = f"step {c.early_stop.step}: {c.early_stop.reason}" if c.early_stop else "—"
    return [c.id, c.role, c.attack_id, str(c.seed), one_line(status, 80),
            f"{last.step if last else 0} / {c.max_steps} {budget_unit(c.technique)}",
            one_line(stop, 120),
            num(round(c.seconds, 1)), num(last.tokens if last else 0),
            num(last.flop if last else 0.0)]


def _weights(j: dict[str, Any]) -> str:
    """The judge model's root digest, or what it is when it has no weights (a rule)."""
    digest = j.get("weights_digest")
    return one_line(f"sha256 {short_digest(digest)}", 40) if digest else "rule-based, no weights"


def validated_twin(j: dict[str, Any], judges: list[dict[str, Any]]) -> str | None:
    """The evaluation where the very same judge (name, parameters, weights) was validated."""
    same = ("name", "params", "weights_digest")
    return next((str(o.get("eval")) for o in judges if o.get("validation")
                 and all(o.get(k) == j.get(k) for k in same)), None)


def _judge(j: dict[str, Any], judges: list[dict[str, Any]]) -> JudgeLine:
    v = j.get("validation") or {}
    confusion = v.get("confusion") or {}
    text = "; ".join(f"{truth}→" + ", ".join(f"{pred} {n}" for pred, n in preds.items())
                     for truth, preds in confusion.items())
    dataset = v.get("dataset") or {}
    if not v:
        twin = validated_twin(j, judges)
        where = (f"not here; the same judge is validated under {one_line(twin, 60)}" if twin
                 else "not validated: error rates unknown")
        return JudgeLine(one_line(j.get("eval"), 60), one_line(j.get("name"), 60),
                         one_line(j.get("version"), 20), _weights(j), where,
                         "—", "—", "—", "—", "—")
    return JudgeLine(one_line(j.get("eval"), 60), one_line(j.get("name"), 60),
                     one_line(j.get("version"), 20), _weights(j),
                     one_line(f"{dataset.get('name', '—')} "
                              f"(sha256 {short_digest(dataset.get('sha256'), 12)})", 200),
                     num(v.get("n")), pct(v.get("accuracy")), pct(v.get("false_positive_rate")),
                     pct(v.get("false_negative_rate")), one_line(text or "—", 400),
                     _agreement(v))


def _agreement(v: dict[str, Any]) -> str:
    """Per-label agreement; a judge that cannot tell uplift says so beside it."""
    per_label = v.get("per_label") or {}
    text = ", ".join(f"{label} {pct(a.get('agreement'))} (n={num(a.get('n'))})"
                     for label, a in per_label.items())
    if v.get("scores_uplift") is False and any(k in per_label for k in
                                                ("compliant", "harmful_uplift")):
        text += "; cannot tell uplift from compliance"
    return one_line(text or "—", 400)


def methodology(evidence: Evidence, policy: Policy) -> Methodology:
    threat = policy.threat_model.model_dump(mode="json")
    stats = policy.statistics
    return Methodology(
        threat_model=[(k.replace("_", " "), one_line(v if isinstance(v, str) else num(v), 400))
                      for k, v in threat.items() if v not in ("", None)],
        attacks=[_attack(a) for a in evidence.attacks],
        cells=[_cell(c) for c in evidence.cells],
        evaluations=[(one_line(k, 60), one_line(v.get("plugin"), 60),
                      one_line(v.get("summary", ""), 300), _kv(v.get("params", {})))
                     for k, v in evidence.evaluations.items()],
        judges=[_judge(j, evidence.judges) for j in evidence.judges],
        checks=[(one_line(c.id, 80), c.check,
                 one_line(" ".join((inspect.getdoc(type(c)) or "").split()), 600))
                for c in policy.checks],
        datasets=[(one_line(d.get("name"), 120), num(d.get("n")),
                   one_line(d.get("sha256"), 80), one_line(d.get("licence") or "—", 120))
                  for d in evidence.datasets],
        licence=_common_licence(evidence.datasets),
        statistics=[("confidence", pct(stats.confidence, 0)),
                    ("interval", one_line(stats.interval, 40)),
                    ("gate", "on the conservative bound of the interval; an interval that "
                             "straddles a threshold is inconclusive"),
                    ("early stopping", "on" if stats.early_stop else "off"),
                    ("reproducibility tolerance", _tolerance(policy))])


def _tolerance(policy: Policy) -> str:
    """What `certify replay` accepts as the same measurement on another machine."""
    t = policy.statistics.reproducibility
    return (f"a re-run agrees when each judged count after training moves by at most "
            f"max({t.judged_min}, {pct(t.judged_share, 0)} of n) items, each capability count "
            f"(lm-eval, no judge) by at most max({t.capability_min}, "
            f"{pct(t.capability_share, 0)} of n), those of the unmodified "
            f"model by at most {t.untrained_judged}, each loss by at most {pct(t.loss_rel, 0)}, "
            f"and each break point by at most {t.break_checkpoints} checkpoint(s); a check whose "
            f"verdict flips when every count moves that far is listed under limitations")


def _numerics(env: dict[str, Any]) -> str:
    n = env.get("numerics") or {}
    if not n:
        return "not recorded"
    flags = ", ".join(n.get("cpu_flags") or []) or "—"
    return one_line(f"torch {n.get('torch')}, {n.get('threads')} thread(s), deterministic "
                    f"{'on' if n.get('deterministic') else 'off'}, {n.get('cpu')} ({flags}; "
                    f"kernels {n.get('cpu_capability')}), BLAS {n.get('blas')}, dtype "
                    f"{n.get('dtype')}" + (f", {n['gpu']}" if n.get("gpu") else "")
                    + (f", env {_kv(n['env'])}" if n.get("env") else ""), 400)


def environment(evidence: Evidence) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    env, run = evidence.environment, evidence.run
    hardware = env.get("hardware") or {}
    revision = env.get("certify_revision") or {}
    rows = [("certify", one_line(f"{evidence.certify_version} "
                                 f"(git {revision.get('commit', '—')}"
                                 f"{', modified' if revision.get('dirty') else ''})", 200)),
            ("python", one_line(env.get("python"), 60)),
            ("platform", one_line(env.get("platform"), 200)),
            ("hardware", _kv(hardware)),
            ("numerics", _numerics(env)),
            ("command", one_line(run.get("command"), 600)),
            ("executor / device / dtype", one_line(f"{run.get('executor')}{_fsdp(run)} / "
                                                   f"{run.get('device')} / {run.get('dtype')}",
                                                   120)),
            ("started / collected", one_line(f"{run.get('created')} / {run.get('collected')}",
                                             80)),
            ("resumed", num(len(run.get("resumes") or [])) + " time(s)")]
    packages = [(one_line(k, 60), one_line(v, 60)) for k, v in (env.get("packages") or {}).items()]
    return rows, packages


def _fsdp(run: dict[str, Any]) -> str:
    processes = run.get("fsdp") or 1
    return f" (FSDP over {num(processes)} processes)" if processes != 1 else ""


def digest_index(evidence: Evidence, evidence_sha256: str) -> list[tuple[str, str, str]]:
    """(what, name, sha256) for every artefact the evidence binds."""
    rows = [("evidence", "evidence.json (embedded in this PDF)", evidence_sha256)]
    for role, model in evidence.models.items():
        if not model:
            continue
        rows.append((f"{role} model", f"{one_line(model.get('spec'), 120)} (root digest)",
                     model.get("root_digest", "")))
        rows += [(f"{role} file", one_line(path, 120), digest)
                 for path, digest in sorted(model.get("files", {}).items())]
    rows += [(f"policy {f.get('role', '')}", one_line(f.get("source"), 120), f.get("sha256", ""))
             for f in evidence.policy.get("files", [])]
    rows += [("dataset", one_line(d.get("name"), 120), d.get("sha256", ""))
             for d in evidence.datasets]
    rows += [("samples", c.samples_file, c.samples_sha256 or "") for c in evidence.cells
             if c.samples_file]
    return rows
