"""Collect the run directory's cell results into the evidence record and decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certify import __version__, environment, registry
from certify.assess import assess, scope_sentence
from certify.evidence import Evidence
from certify.plan import Plan
from certify.policy.load import LoadedPolicy
from certify.run.rundir import RunDir


@dataclass
class RunResult:
    """A finished audit or merge: its run directory, evidence and the reports written."""

    run_dir: Path
    evidence: Evidence
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return self.evidence.verdict.exit_code if self.evidence.verdict else 3


def _attacks(loaded: LoadedPolicy) -> list[dict[str, Any]]:
    out = []
    for a in loaded.policy.attacks:
        spec = registry.get("attack", a.attack)
        out.append({"id": a.id, "technique": a.attack, "version": spec.version,
                    "summary": spec.summary, "paper": spec.paper, "purpose": a.purpose,
                    "params": a.params, "budget": a.budget, "seeds": a.seeds,
                    "models": a.models})
    return out


def _evaluations(loaded: LoadedPolicy) -> dict[str, dict[str, Any]]:
    out = {}
    for eval_id, e in loaded.policy.evaluations.items():
        spec = registry.get("eval", e.eval)
        out[eval_id] = {"plugin": e.eval, "version": spec.version, "summary": spec.summary,
                        "measures": spec.extra.get("measures", ""), "params": e.params}
    return out


def _judges_and_datasets(cells: list[Any], datasets: list[dict[str, Any]],
                         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    judges: dict[str, dict[str, Any]] = {}
    seen = {d["name"]: d for d in datasets}
    for cell in cells:
        for eval_id, ident in sorted(cell.notes.get("evaluators", {}).items()):
            validation = {v["judge"]: v for v in ident.get("judge_validation", [])}
            for j in ident.get("judges", []):
                judges.setdefault(f"{eval_id}/{j['name']}", {
                    "eval": eval_id, **j, "validation": validation.get(j["name"])})
            if "dataset" in ident:
                seen.setdefault(ident["dataset"]["name"], ident["dataset"])
        for d in cell.notes.get("train_data", []):
            seen.setdefault(d["name"], {k: v for k, v in d.items()
                                        if k not in ("categories_used", "n_used", "overlap")})
    return list(judges.values()), sorted(seen.values(), key=lambda d: d["name"])


def limitations(loaded: LoadedPolicy) -> list[str]:
    policy = loaded.policy
    items = list(policy.limitations)
    items += [f"Out of scope: {x.replace('_', ' ')}." for x in policy.out_of_scope]
    if not policy.meta.evidentiary:
        items.insert(0, "NON-EVIDENTIARY: this policy is a plumbing check; its verdict is not "
                        "evidence of anything about the model.")
    items.append("Greedy decoding on a fixed prompt set; other decoding settings or prompts "
                 "may elicit different behaviour.")
    items.append("Only the attacks and budgets declared in the policy were run; stronger or "
                 "different attacks (e.g. RL-based, tool-augmented) are not covered.")
    return items


def collect(run_dir: RunDir, loaded: LoadedPolicy, models: dict[str, Any], plan: Plan,
            datasets: list[dict[str, Any]], opts: Any) -> Evidence:
    manifest = run_dir.manifest()
    cells = run_dir.read_cells([c.id for c in plan.cells])
    judges, all_datasets = _judges_and_datasets(cells, datasets)
    done = sum(c.status == "ok" for c in cells)
    status = "complete" if done == len(plan.cells) else "incomplete"
    evidence = Evidence(
        certify_version=__version__,
        run={"run_id": manifest["run_id"], "created": manifest["created"],
             "collected": environment_now(), "status": status, "command": opts.command,
             "executor": opts.executor, "device": opts.device, "fsdp": opts.fsdp,
             "dtype": opts.dtype,
             "autocast": opts.autocast, "gradient_checkpointing": opts.gradient_checkpointing,
             "resumes": manifest.get("resumes", []), "plan": plan.summary(),
             "shard": list(opts.shard) if opts.shard else None},
        environment=environment.capture(),
        policy={"id": loaded.policy.id, "version": loaded.policy.version,
                "title": loaded.policy.title, "source": loaded.source, "sha256": loaded.sha256,
                "files": [f.__dict__ for f in loaded.files],
                "meta": loaded.policy.meta.model_dump(),
                "clause_map": [c.model_dump() for c in loaded.policy.clause_map],
                "effective": loaded.effective},
        models={"candidate": models["candidate"][1].to_json(),
                "reference": models["reference"][1].to_json() if "reference" in models else None},
        datasets=all_datasets, judges=judges, evaluations=_evaluations(loaded),
        attacks=_attacks(loaded), cells=cells, limitations=limitations(loaded))
    evidence.verdict = assess(evidence)
    evidence.scope = scope_sentence(loaded.policy, evidence.verdict.overall)
    return evidence


def environment_now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
