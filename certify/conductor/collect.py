"""Collect the run directory's cell results and the audit's inputs into the evidence record.

The record is undecided here: assessing it is the next stage. For a merge the inputs
are read back from a shard's evidence (:func:`inputs_of`), since no model is at hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certify import __version__, environment, registry
from certify._io import utc_now
from certify.conductor.options import AuditOptions
from certify.errors import InputError
from certify.evidence import Evidence
from certify.models.source import ModelIdentity
from certify.plan import Plan
from certify.policy.load import LoadedPolicy, PolicyFile
from certify.policy.schema import Policy
from certify.run.rundir import RunDir


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


def numerics_of(cells: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """The numerics the cells ran with (one dict when every cell agrees) and, when cells ran
    under different ones, a limitation naming what differs."""
    seen = [c.numerics for c in cells if c.numerics]
    if not seen:
        return {}, []
    differ = sorted({k for n in seen for k in n if any(o.get(k) != n.get(k) for o in seen)})
    if not differ:
        return dict(seen[0]), []
    common = {k: v for k, v in seen[0].items() if k not in differ}
    return common, [f"Cells ran under different numerics ({', '.join(differ)} differ between "
                    f"workers): their numbers may differ within the reproducibility tolerance "
                    f"(statistics.reproducibility) from one machine's run."]


def collect(run_dir: RunDir, loaded: LoadedPolicy, models: dict[str, Any], plan: Plan,
            datasets: list[dict[str, Any]], opts: AuditOptions) -> Evidence:
    """The evidence of the plan's cells in ``run_dir`` (not yet assessed)."""
    manifest = run_dir.manifest()
    cells = run_dir.read_cells([c.id for c in plan.cells])
    judges, all_datasets = _judges_and_datasets(cells, datasets)
    done = sum(c.status == "ok" for c in cells)
    status = "complete" if done == len(plan.cells) else "incomplete"
    numerics, mixed = numerics_of(cells)
    return Evidence(
        certify_version=__version__,
        run={"run_id": manifest["run_id"], "created": manifest["created"],
             "collected": utc_now(), "status": status, "command": opts.command,
             "executor": opts.executor, "device": opts.device, "fsdp": opts.fsdp,
             "dtype": opts.dtype,
             "autocast": opts.autocast, "gradient_checkpointing": opts.gradient_checkpointing,
             "resumes": manifest.get("resumes", []), "plan": plan.summary(),
             "shard": list(opts.shard) if opts.shard else None},
        environment={**environment.capture(), "numerics": numerics},
        policy={"id": loaded.policy.id, "version": loaded.policy.version,
                "title": loaded.policy.title, "source": loaded.source, "sha256": loaded.sha256,
                "files": [f.__dict__ for f in loaded.files],
                "meta": loaded.policy.meta.model_dump(),
                "clause_map": [c.model_dump() for c in loaded.policy.clause_map],
                "effective": loaded.effective},
        models={"candidate": models["candidate"][1].to_json(),
                "reference": models["reference"][1].to_json() if "reference" in models else None},
        datasets=all_datasets, judges=judges, evaluations=_evaluations(loaded),
        attacks=_attacks(loaded), cells=cells, limitations=limitations(loaded) + mixed)


def policy_of(evidence: Evidence) -> Policy:
    """The typed effective policy of evidence read back from disk (parsed once, here)."""
    from pydantic import ValidationError

    try:
        return Policy.model_validate(evidence.policy["effective"])
    except (KeyError, ValidationError) as e:
        raise InputError(f"the evidence's effective policy is unreadable: "
                         f"{str(e).splitlines()[0]}") from None


def inputs_of(evidence: Evidence) -> tuple[LoadedPolicy, dict[str, Any]]:
    """The loaded policy and the models' identities an audit recorded in its evidence."""
    files = [PolicyFile(**f) for f in evidence.policy["files"]]
    loaded = LoadedPolicy(policy_of(evidence), evidence.policy["source"],
                          Path(files[0].path if files else evidence.policy["source"]),
                          evidence.policy["sha256"], files)
    models = {role: (None, ModelIdentity(**ident))
              for role, ident in evidence.models.items() if ident}
    return loaded, models


def plan_of(loaded: LoadedPolicy, models: dict[str, Any], planned: list[str]) -> Plan:
    """The plan a run recorded (its cell ids), made again from its policy and model digests:
    the CellSpecs a merge checks and a replay runs. Refused when the ids differ."""
    from certify.plan import make_plan

    plan = make_plan(loaded.policy, {r: i.root_digest for r, (_, i) in models.items()})
    if [c.id for c in plan.cells] != planned:
        raise InputError("the run was planned by a different certify version than this one, "
                         "so its cell ids cannot be checked",
                         hint="use the certify version that ran it")
    return plan


def merge_options(evidence: Evidence, executors: list[str], command: str) -> AuditOptions:
    """The options a merged audit records: the first shard's, with every shard's executor."""
    ev = evidence
    return AuditOptions(
        model=str(ev.models["candidate"]["spec"] if ev.models["candidate"] else ""),
        policy=str(ev.policy["source"]), executor="+".join(sorted(set(executors))),
        device=str(ev.run.get("device")), fsdp=int(ev.run.get("fsdp", 1)),
        dtype=str(ev.run.get("dtype")), autocast=ev.run.get("autocast"),
        gradient_checkpointing=bool(ev.run.get("gradient_checkpointing")), command=command)
