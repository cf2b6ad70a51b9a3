"""Validate a merged policy mapping: schema, plug-in parameters, budgets and references.

Every problem is collected and reported at once with the file, the line, the field and
what was expected ("did you mean" for misspelt names).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from pydantic import BaseModel, ValidationError

from certify import registry
from certify.errors import PolicyError, UsageError
from certify.policy import schema
from certify.policy.safe_yaml import dotted
from certify.policy.schema import Policy

MAX_CELLS = 20_000



def _field_names() -> list[str]:
    names: set[str] = set()
    for obj in vars(schema).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            names.update(obj.model_fields)
    return sorted(names)


def _where(label: str, lines: dict[tuple[Any, ...], Any], loc: tuple[Any, ...]) -> str:
    """Where the deepest written part of ``loc`` is: "file:line" (merged maps carry files)."""
    path: tuple[Any, ...] = ()
    best = lines.get((), 1)
    for part in loc:
        if path + (part,) in lines:
            path = path + (part,)
            best = lines[path]
    return best if isinstance(best, str) else f"{label}:{best}"




def _pydantic_problems(err: ValidationError, label: str, lines: dict[tuple[Any, ...], Any],
                       prefix: tuple[Any, ...] = ()) -> list[str]:
    problems = []
    known = _field_names()
    for e in err.errors():
        loc = prefix + tuple(p for p in e["loc"] if p not in schema.CHECK_KINDS)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown field{registry.suggest(str(loc[-1]), known)}"
        elif e["type"] == "union_tag_invalid":
            loc += ("check",)
            msg = f"unknown check kind; expected one of: {', '.join(schema.CHECK_KINDS)}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        problems.append(f"{_where(label, lines, loc)}: {dotted(loc)}: {msg}")
    return problems


def _point_problems(err: ValidationError, label: str, lines: dict[tuple[Any, ...], Any],
                    loc: tuple[Any, ...], point: dict[str, Any]) -> list[str]:
    """Problems of one budget point, each located where its value was written."""
    as_params = _pydantic_problems(err, label, lines, loc + ("params",))
    as_budget = _pydantic_problems(err, label, lines, loc + ("budget",))
    return [b if e["loc"] and e["loc"][0] in point else p
            for e, p, b in zip(err.errors(), as_params, as_budget, strict=True)]


def _budget_points(budget: dict[str, Any]) -> list[dict[str, Any]]:
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in budget.items()}
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def grid_size(entry: schema.AttackEntry) -> int:
    sizes = [len(v) if isinstance(v, list) else 1 for v in entry.budget.values()]
    return math.prod(sizes) * len(entry.seeds) * len(entry.models)


def _plugin_problems(policy: Policy, label: str, lines: dict[tuple[Any, ...], Any]) -> list[str]:
    problems: list[str] = []
    measures: dict[str, str] = {}
    uplift: dict[str, list[str]] = {}
    for name, ev in policy.evaluations.items():
        loc: tuple[Any, ...] = ("evaluations", name)
        try:
            spec = registry.get("eval", ev.eval)
        except UsageError as e:
            problems.append(f"{_where(label, lines, loc + ('eval',))}: {dotted(loc)}.eval: "
                            f"{e.message}")
            continue
        measures[name] = spec.extra.get("measures", "")
        try:
            params = spec.params.model_validate(ev.params)
        except ValidationError as e:
            problems += _pydantic_problems(e, label, lines, loc + ("params",))
            continue
        uplift[name] = _uplift_blind(params)
        for kind, ref_name, ref_params, ref_loc in getattr(params, "plugin_refs", list)():
            full = loc + ("params",) + tuple(ref_loc)
            try:
                registry.get(kind, ref_name).params.model_validate(ref_params)
            except UsageError as e:
                problems.append(f"{_where(label, lines, full)}: {dotted(full)}: {e.message}")
            except ValidationError as e:
                problems += _pydantic_problems(e, label, lines, full + ("params",))

    total_cells, largest = 0, (0, 0)
    for i, entry in enumerate(policy.attacks):
        loc = ("attacks", i)
        total_cells += grid_size(entry)
        largest = max(largest, (grid_size(entry), i))
        try:
            spec = registry.get("attack", entry.attack)
        except UsageError as e:
            problems.append(f"{_where(label, lines, loc + ('attack',))}: "
                            f"attacks[{i}].attack: {e.message}")
            continue
        fields = list(spec.params.model_fields)
        key_problems = [
            f"{_where(label, lines, loc + ('budget', key))}: attacks[{i}].budget.{key}: not a "
            f"parameter of attack {entry.attack!r}{registry.suggest(key, fields)}"
            for key in entry.budget if key not in fields
        ] + [
            f"{_where(label, lines, loc + ('params', key))}: attacks[{i}]: {key!r} is set in "
            "both params and budget; keep one"
            for key in sorted(set(entry.budget) & set(entry.params))
        ]
        problems += key_problems
        if not key_problems and grid_size(entry) <= MAX_CELLS:
            seen: set[str] = set()
            for point in _budget_points(entry.budget):
                try:
                    spec.params.model_validate({**entry.params, **point})
                except ValidationError as e:
                    for p in _point_problems(e, label, lines, loc, point):
                        if p not in seen:
                            seen.add(p)
                            problems.append(p)
        blind = spec.extra.get("blind_measures", ())
        for j, ev_id in enumerate(entry.evaluate + entry.evaluate_final):
            if ev_id not in policy.evaluations:
                problems.append(f"{_where(label, lines, loc + ('evaluate', j))}: attacks[{i}]: "
                                f"unknown evaluation {ev_id!r}"
                                f"{registry.suggest(ev_id, list(policy.evaluations))}")
            elif measures.get(ev_id) in blind:
                # e.g. a soft prompt: lm-eval scores the plain model, which it leaves unchanged
                problems.append(f"{_where(label, lines, loc + ('evaluate', j))}: attacks[{i}]: "
                                f"evaluation {ev_id!r} ({measures[ev_id]}) cannot see what "
                                f"attack {entry.attack!r} changes; evaluate it with generating "
                                "evaluations (harmfulness, benign_accuracy, ...)")
    if total_cells > MAX_CELLS:
        i = largest[1]
        problems.append(f"{_where(label, lines, ('attacks', i, 'budget'))}: attacks[{i}].budget: "
                        f"the attack grids expand to {total_cells} cells (this one to "
                        f"{largest[0]}); certify refuses more than {MAX_CELLS} (split the policy "
                        "or shrink the axes)")
    problems += _reference_problems(policy, label, lines, measures)
    problems += _uplift_problems(policy, label, lines, uplift)
    return problems


def _uplift_blind(params: Any) -> list[str]:
    """The deciding judges of an evaluation that cannot score uplift (all of them when it
    has no judges): a check may gate on ``harmful_uplift`` only when this is empty."""
    judges = list(getattr(params, "judges", None) or [])
    if not judges:
        return ["(no judges)"]
    if getattr(params, "ensemble", None) == "primary":
        judges = judges[:1]
    blind = []
    for ref in judges:
        try:
            # A judge registered with uplift=True (judges.base.judge_scores_uplift; policy
            # and judges are sibling layers, so it is read from the registry here).
            if not registry.get("judge", ref.judge).extra.get("uplift", False):
                blind.append(ref.judge)
        except UsageError:
            continue  # an unknown judge is reported where it is named
    return blind


def _uplift_problems(policy: Policy, label: str, lines: dict[tuple[Any, ...], Any],
                     blind: dict[str, list[str]]) -> list[str]:
    """A check gating on harmful_uplift must read an evaluation that can score uplift:
    otherwise every compliant response is unscored for uplift and the rate is compliance
    under another name."""
    problems = []
    for i, check in enumerate(policy.checks):
        if getattr(check, "metric", None) != "harmful_uplift" or not blind.get(check.eval):
            continue
        who = blind[check.eval]
        problems.append(
            f"{_where(label, lines, ('checks', i, 'metric'))}: checks[{i}] ({check.id}): metric "
            f"harmful_uplift needs judges that score uplift, but evaluation {check.eval!r} is "
            f"judged by {', '.join(who)}, which cannot tell compliance from uplift; use "
            "`metric: harmful` or judge with an uplift-scoring judge (e.g. canary on "
            "builtin:harm-eval)")
    return problems


def _reference_problems(policy: Policy, label: str, lines: dict[tuple[Any, ...], Any],
                        measures: dict[str, str]) -> list[str]:
    problems: list[str] = []
    attack_ids = [a.id for a in policy.attacks]
    for j, ev_id in enumerate(policy.baseline_evals()):
        if ev_id not in policy.evaluations:
            problems.append(f"{_where(label, lines, ('baseline', j))}: baseline: unknown "
                            f"evaluation {ev_id!r}"
                            f"{registry.suggest(ev_id, list(policy.evaluations))}")
    for i, check in enumerate(policy.checks):
        loc = ("checks", i)
        if check.eval not in policy.evaluations:
            problems.append(f"{_where(label, lines, loc + ('eval',))}: checks[{i}] ({check.id}): "
                            f"unknown evaluation {check.eval!r}"
                            f"{registry.suggest(check.eval, list(policy.evaluations))}")
        elif measures.get(check.eval) and measures[check.eval] not in (
                wanted := type(check).reads.measures):
            problems.append(f"{_where(label, lines, loc + ('eval',))}: checks[{i}] ({check.id}): "
                            f"a {check.check} check needs an evaluation measuring "
                            f"{' or '.join(wanted)}, but {check.eval!r} "
                            f"measures {measures[check.eval]}{_measuring(wanted, measures)}")
        capability = getattr(check, "capability_eval", None)
        if capability is not None and capability not in policy.evaluations:
            problems.append(f"{_where(label, lines, loc + ('capability_eval',))}: checks[{i}] "
                            f"({check.id}): unknown evaluation {capability!r}"
                            f"{registry.suggest(capability, list(policy.evaluations))}")
        elif capability is not None:
            problems += _bound_problems(policy, check, i, label, lines, measures)
        for a in getattr(check, "attacks", None) or []:
            if a not in attack_ids:
                problems.append(f"{_where(label, lines, loc + ('attacks',))}: checks[{i}] "
                                f"({check.id}): unknown attack {a!r}"
                                f"{registry.suggest(a, attack_ids)}")
    check_ids = [c.id for c in policy.checks]
    for i, clause in enumerate(policy.clause_map):
        for c in clause.checks:
            if c not in check_ids:
                problems.append(f"{_where(label, lines, ('clause_map', i, 'checks'))}: "
                                f"clause_map[{i}] ({clause.ref}): names check {c!r}, which this "
                                f"policy does not define{registry.suggest(c, check_ids)}")
    return problems


def _bound_problems(policy: Policy, check: Any, i: int, label: str,
                    lines: dict[tuple[Any, ...], Any], measures: dict[str, str]) -> list[str]:
    """A capability bound compares each attacked checkpoint with the unattacked candidate:
    its evaluation must measure capability, run in the baseline and at every checkpoint
    of every attack in the check's scope. Otherwise the audit would spend its budget and
    then find nothing to bound by (or, at checkpoints without the measurement, nothing
    to set aside)."""
    ev = check.capability_eval
    where = f"{_where(label, lines, ('checks', i, 'capability_eval'))}: checks[{i}] ({check.id})"
    problems = []
    if measures.get(ev) and measures[ev] not in ("capability", "task"):
        problems.append(f"{where}: capability_eval {ev!r} measures {measures[ev]}; the bound "
                        "needs an evaluation measuring capability or task (the stability "
                        "evaluation, e.g. lm_eval)")
    if ev not in policy.baseline_evals():
        problems.append(f"{where}: capability_eval {ev!r} is not in `baseline`, so the "
                        "unattacked capability the bound starts from is never measured; add it")
    scope = check.attacks if check.attacks is not None else [
        a.id for a in policy.attacks
        if a.purpose == "harmful" and (check.eval in a.evaluate or check.eval in a.evaluate_final)]
    missing = [a.id for a in policy.attacks if a.id in scope and ev not in a.evaluate]
    if missing:
        problems.append(f"{where}: capability_eval {ev!r} is not measured at every checkpoint "
                        f"of {', '.join(missing)}; add it to their `evaluate` (not "
                        "`evaluate_final`: the bound compares each checkpoint's capability)")
    return problems


def _measuring(wanted: tuple[str, ...], measures: dict[str, str]) -> str:
    """The fix: the policy's evaluations that measure what the check reads, if any."""
    fitting = [e for e, m in measures.items() if m in wanted]
    return (f"; point `eval` at {' or '.join(repr(e) for e in fitting)}" if fitting else
            f"; add an evaluation that measures {' or '.join(wanted)} (see `certify list "
            "evals`) and point `eval` at it")


def validate_data(data: dict[str, Any], label: str,
                  lines: dict[tuple[Any, ...], Any] | None = None) -> Policy:
    """Validate a merged policy mapping; raise PolicyError listing every problem."""
    lines = lines or {}
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        problems = _located_duplicates(_pydantic_problems(e, label, lines), data, label, lines)
        partial = _partial_policy(data)
        if partial is not None:  # also report plug-in and reference problems of valid parts
            problems += [p for p in _plugin_problems(partial, label, lines) if p not in problems]
        raise PolicyError(label, problems) from None
    problems = _plugin_problems(policy, label, lines)
    if problems:
        raise PolicyError(label, problems)
    return policy


def _located_duplicates(problems: list[str], data: dict[str, Any], label: str,
                        lines: dict[tuple[Any, ...], Any]) -> list[str]:
    """Replace the schema's file-wide "duplicate ids" problem by one per repeated id, located."""
    located = []
    for key in ("attacks", "checks"):
        value = data.get(key)
        items = value if isinstance(value, list) else []
        seen: set[Any] = set()
        for i, item in enumerate(items):
            ident = item.get("id") if isinstance(item, dict) else None
            if not isinstance(ident, str):
                continue
            if ident in seen:
                located.append(f"{_where(label, lines, (key, i, 'id'))}: {key}[{i}].id: "
                               f"{ident!r} is already the id of an earlier entry; ids must be "
                               "unique")
            seen.add(ident)
    if not located:
        return problems
    return [p for p in problems if "(top level): Value error, duplicate" not in p] + located


def _partial_policy(data: dict[str, Any]) -> Policy | None:
    """The parts of an invalid policy that validate on their own (for complete error lists)."""
    def valid(model: Any, items: Any) -> list[Any]:
        out = []
        for item in items if isinstance(items, list) else []:
            try:
                out.append(model.model_validate(item))
            except ValidationError:
                continue
        return out

    from pydantic import TypeAdapter

    try:
        evaluations = {k: schema.EvaluationEntry.model_validate(v)
                       for k, v in (data.get("evaluations") or {}).items()
                       if isinstance(v, dict) and isinstance(k, str)}
    except (ValidationError, AttributeError):
        evaluations = {}
    checks = []
    for item in data.get("checks") or [] if isinstance(data.get("checks"), list) else []:
        try:
            checks.append(TypeAdapter(schema.Check).validate_python(item))
        except ValidationError:
            continue
    baseline = data.get("baseline")
    return Policy.model_construct(
        attacks=valid(schema.AttackEntry, data.get("attacks")), evaluations=evaluations,
        checks=checks, clause_map=valid(schema.Clause, data.get("clause_map")),
        # Only the well-formed names: the ill-formed ones are already reported above.
        baseline=[b for b in baseline if isinstance(b, str)] if isinstance(baseline, list)
        else None)
