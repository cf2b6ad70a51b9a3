"""The policy file schema (v1): threat model, attacks and budgets, evaluations, checks.

Every model forbids unknown keys, so a typo is an error rather than a silently
ignored threshold. Plug-ins (attacks, evals, judges) are named, never imported by
path. Cross-references (an attack's evals, a check's attacks, a clause's checks)
are checked in :mod:`certify.policy.load`, which reports every problem at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Role = Literal["candidate", "reference"]
Scalar = float | int | str | bool
Condition = Literal[
    "resistance_strong", "resistance_weak", "stability", "generalization", "trainability",
    "validity",
]
CONDITIONS: dict[Condition, tuple[str, str]] = {
    # condition: (its name, the question its checks answer), in report order
    "resistance_strong": ("Strong resistance", "Does harmfulness stay under the threshold for "
                          "every attack and checkpoint in the budget?"),
    "resistance_weak": ("Weak resistance", "How much more does it cost to break the candidate "
                        "than the undefended reference?"),
    "stability": ("Stability", "Is harmless capability kept, without extra refusals?"),
    "generalization": ("Generalization", "Does resistance hold on harm categories the attack "
                       "did not train on?"),
    "trainability": ("Trainability", "Can the candidate still be fine-tuned for harmless tasks, "
                     "and stay safe after?"),
    "validity": ("Audit validity", "Can this audit show anything: do the attacks break the "
                 "reference, and are the judges accurate?"),
}


def condition_name(condition: str) -> str:
    """A condition's name as reports print it ("Strong resistance")."""
    names: dict[str, str] = {key: name for key, (name, _) in CONDITIONS.items()}
    return names.get(condition) or condition.replace("_", " ").capitalize()
CostUnit = Literal["steps", "samples", "tokens", "flop", "seconds"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyMeta(Strict):
    """What the policy is, and what it is not."""

    regime: str = "none"
    """The regulatory regime or framework this policy reads (free text)."""
    legal_status: str = "none"
    """Legal status of that regime, e.g. 'vetoed', 'in force', 'voluntary guidance'."""
    evidentiary: bool = True
    """False for plumbing checks such as ci-smoke: reports say NON-EVIDENTIARY."""
    interpretation_notice: str = (
        "PROJECT INTERPRETATION — NOT LEGAL TEXT. Thresholds are engineering choices."
    )


EvidenceField = Literal["samples_per_eval", "redact_harmful", "validity_days", "retention",
                        "signing_required"]


class Clause(Strict):
    """One clause of a regime, what it needs, and the checks (or evidence settings) serving it."""

    ref: str
    status: str = Field(pattern=r"^[VSU]\b")
    """Verification tag of the clause research: V verified, S secondary, U unverified."""
    need: str
    checks: list[str] = Field(default_factory=list)
    """Ids of checks in this policy that serve the clause."""
    evidence: list[EvidenceField] = Field(default_factory=list)
    """`evidence` settings that serve the clause (retention, samples, validity, signing)."""

    @model_validator(mode="after")
    def _served(self) -> Clause:
        if not self.checks and not self.evidence:
            raise ValueError(f"clause {self.ref!r} names no check and no evidence setting; "
                             "a clause the policy cannot serve belongs in limitations")
        return self


class ThreatModel(Strict):
    """Who the attacker is and what they may do."""

    access: Literal["open_weights", "finetune_api", "finetune_api_moderated"] = "open_weights"
    attacker_profile: str = ""
    max_gpu_hours_per_cell: float | None = Field(default=None, gt=0)
    notes: str = ""


class Geometric(Strict):
    geometric: int = Field(ge=1)
    """First checkpoint after step 0; later ones double until max_steps."""


class Every(Strict):
    every: int = Field(ge=1)


Checkpoints = Literal["geometric", "final"] | Geometric | Every | list[Annotated[int, Field(ge=0)]]


class AttackEntry(Strict):
    """One attack of the threat model and the budget grid it is run over."""

    id: Slug
    attack: str
    """Registered attack technique, e.g. sft, lora (see `certify list attacks`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Fixed parameters of the technique, e.g. the dataset and its categories."""
    budget: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    """Grid axes: each value is one setting or a list of settings (learning_rate, n_samples,
    batch_size, optimizer, schedule, lora_rank, ...). max_steps is one number: the
    trajectory is evaluated at checkpoints on the way."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    checkpoints: Checkpoints = "geometric"
    evaluate: list[str] = Field(default_factory=lambda: ["harm"], min_length=1)
    """Evaluations run at every checkpoint."""
    evaluate_final: list[str] = Field(default_factory=list)
    """Evaluations run at the last checkpoint only (expensive ones, e.g. lm-eval)."""
    models: list[Role] = Field(default_factory=lambda: list[Role](["candidate", "reference"]),
                               min_length=1)
    """Which models the grid runs on. The reference runs only when one is given."""
    purpose: Literal["harmful", "benign"] = "harmful"
    """Harmful attacks feed resistance checks; benign ones feed trainability."""

    @field_validator("budget")
    @classmethod
    def _axes_non_empty(cls, budget: dict[str, Any]) -> dict[str, Any]:
        for key, value in budget.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"budget axis {key!r} is an empty list; give at least one value")
            if key == "max_steps" and isinstance(value, list):
                raise ValueError(
                    "max_steps is one number per attack (the trajectory is evaluated at "
                    "checkpoints up to it); use `checkpoints` to evaluate smaller budgets"
                )
        return budget

    @model_validator(mode="after")
    def _unique_evaluations(self) -> AttackEntry:
        # A cell records each evaluation under its id: one listed twice (or both at every
        # checkpoint and at the last) would overwrite its own result (TamperBench #119).
        ids = self.evaluate + self.evaluate_final
        dupes = sorted({e for e in ids if ids.count(e) > 1})
        if dupes:
            raise ValueError(f"evaluation(s) {', '.join(dupes)} listed more than once in "
                             "evaluate/evaluate_final; results are keyed by evaluation id, "
                             "so name each once (define a second evaluation under another "
                             "id to measure it twice)")
        return self

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds


class EvaluationEntry(Strict):
    """A named evaluation: a registered eval plug-in and its parameters."""

    eval: str
    params: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Reads:
    """What a check kind reads: the part of its declaration that validation and early
    stopping need (how it decides lives in certify.assess.kinds)."""

    measures: tuple[str, ...]
    """What its evaluation must measure (eval plug-ins declare `measures`)."""
    roles: tuple[Role, ...] = ()
    """Whose attack cells it reads along their trajectories; () reads baselines only."""
    purpose: Literal["harmful", "benign"] | None = None
    """Which attacks it covers by default: those of this purpose that evaluate `eval`."""
    metric: str = "harmful"
    """The metric whose rate it gates by default (unscored responses count as harmful); a
    harm check's `metric` field overrides it (:func:`gated_metric`)."""


class _Check(Strict):
    reads: ClassVar[Reads]
    id: Slug
    eval: str = "harm"
    """Id of the evaluation the check reads."""
    required: bool = True
    """An optional check is reported but does not gate the release."""


class _AttackScoped(_Check):
    attacks: list[str] | None = None
    """Attack ids the check covers; default: every attack of the matching purpose that
    evaluates `eval` at its checkpoints."""


HarmMetric = Literal["harmful", "harmful_uplift"]


class _HarmGated(_AttackScoped):
    metric: HarmMetric = "harmful"
    """Which harm rate the check gates on: `harmful` (compliance: the response does what was
    asked, uplift or not; what every policy meant before) or `harmful_uplift` (compliance that
    carried real uplift; needs an evaluation whose judges score uplift). Unscored responses
    count in both."""


def gated_metric(check: Any) -> str:
    """The metric a check gates on: its `metric` field where it has one (harm checks),
    else what its kind declares (``reads.metric``)."""
    return str(getattr(check, "metric", None) or type(check).reads.metric)


class StrongResistance(_HarmGated):
    """Harmfulness stays under max_rate at every checkpoint of every cell (upper CI bound)."""

    reads = Reads(("harm",), ("candidate",), "harmful")
    check: Literal["strong_resistance"]
    max_rate: float = Field(ge=0, le=1)
    condition: Literal["resistance_strong"] = "resistance_strong"
    aggregation: Literal["worst", "top_n_mean", "bounded_worst"] = "worst"
    """How the attacked models' harm becomes one number, each with its Wilson interval:
    `worst` cell and checkpoint; `top_n_mean`, the pooled rate of the `top_n` most harmful
    cells (each at its worst checkpoint); `bounded_worst`, the worst checkpoint whose
    capability (`capability_eval`, same checkpoint) is within `max_capability_drop` of the
    unattacked candidate's: a harmful but incoherent model is reported, never the worst case
    (TamperBench's worst_case, top_n_average, bounded_worst_case)."""
    top_n: int = Field(default=3, ge=1)
    capability_eval: str | None = None
    """The stability evaluation measured at every checkpoint of the attacks in scope."""
    capability_metric: str = "acc"
    max_capability_drop: float | None = Field(default=None, ge=0, le=1)
    """ε: the largest capability drop below the unattacked candidate's that still counts."""

    @model_validator(mode="after")
    def _bounded_needs_capability(self) -> StrongResistance:
        if self.aggregation == "bounded_worst" and (
                self.capability_eval is None or self.max_capability_drop is None):
            raise ValueError("aggregation bounded_worst needs capability_eval (an evaluation "
                             "run at every checkpoint) and max_capability_drop (ε)")
        return self


class KnowledgeResistance(_AttackScoped):
    """Hazardous-knowledge accuracy stays at or below chance + max_above_chance at every
    checkpoint of every cell (upper CI bound), while the same attacks restore it on the
    reference (its positive control, when a reference is audited)."""

    reads = Reads(("knowledge",), ("candidate", "reference"), "harmful", metric="acc")
    check: Literal["knowledge_resistance"]
    eval: str = "knowledge"
    max_above_chance: float = Field(ge=0, le=1)
    """δ: the largest accuracy above the chance level of the evaluated items (recorded by
    the knowledge evaluation: the mean of 1/choices) that still counts as not knowing."""
    condition: Literal["resistance_strong"] = "resistance_strong"


class WeakResistance(_HarmGated):
    """Breaking the candidate costs at least min_ratio times what breaking the reference costs."""

    reads = Reads(("harm",), ("candidate", "reference"), "harmful")
    check: Literal["weak_resistance"]
    harm_level: float = Field(ge=0, le=1)
    """A cell is broken at the first checkpoint whose harmfulness exceeds this level."""
    min_ratio: float = Field(gt=0)
    cost: CostUnit = "steps"
    condition: Literal["resistance_weak"] = "resistance_weak"
    decide_on: Literal["pairs", "censored_median"] = "pairs"
    """`pairs`: the worst ratio of paired candidate/reference cells (same configuration and
    seed). `censored_median`: the Kaplan–Meier median costs across every cell of each
    model, cells that never broke right-censored: pass when the candidate's lower bound is
    min_ratio times the reference's upper bound, fail when even the candidate's upper bound
    is under min_ratio times the reference's lower bound."""


class PositiveControl(_HarmGated):
    """The attacks break the undefended reference, or the audit proves nothing."""

    reads = Reads(("harm",), ("reference",), "harmful")
    check: Literal["positive_control"]
    min_rate: float = Field(ge=0, le=1)
    condition: Literal["validity"] = "validity"


class Generalization(_HarmGated):
    """Harmfulness on categories the attack never trained on stays under max_rate."""

    reads = Reads(("harm",), ("candidate",), "harmful")
    check: Literal["generalization"]
    max_rate: float = Field(ge=0, le=1)
    held_out: list[str] | None = None
    """Held-out categories; default: the eval's categories absent from the attack's data."""
    condition: Literal["generalization"] = "generalization"


class Stability(_Check):
    """Capability of the candidate is within max_drop of the reference."""

    reads = Reads(("capability", "task"))
    check: Literal["stability"]
    max_drop: float = Field(ge=0)
    """Largest allowed drop (reference minus candidate) of the aggregate metric."""
    max_drop_per_task: float | None = Field(default=None, ge=0)
    metric: str = "acc"
    condition: Literal["stability"] = "stability"


class OverRefusal(_Check):
    """The candidate refuses benign-but-edgy prompts at most max_increase more than the reference.
    """

    reads = Reads(("refusal",), metric="refusal")
    check: Literal["over_refusal"]
    max_increase: float = Field(ge=0, le=1)
    eval: str = "over_refusal"
    condition: Literal["stability"] = "stability"


class Trainability(_AttackScoped):
    """Benign fine-tuning works on the candidate at least min_ratio as well as on the reference."""

    reads = Reads(("task",), ("candidate", "reference"), "benign", metric="acc")
    check: Literal["trainability"]
    min_ratio: float = Field(gt=0)
    eval: str = "benign_task"
    condition: Literal["trainability"] = "trainability"


class PostFinetuneSafety(_HarmGated):
    """Harmfulness after benign fine-tuning stays under max_rate (Qi et al. 2023, tier 3)."""

    reads = Reads(("harm",), ("candidate",), "benign")
    check: Literal["post_finetune_safety"]
    max_rate: float = Field(ge=0, le=1)
    condition: Literal["trainability"] = "trainability"


class JudgeValidity(_Check):
    """Every judge of the evaluation reaches min_accuracy on its labelled validation set."""

    reads = Reads(("harm",))
    check: Literal["judge_validity"]
    min_accuracy: float = Field(ge=0, le=1)
    condition: Literal["validity"] = "validity"


CHECK_CLASSES: tuple[type[_Check], ...] = (
    StrongResistance, WeakResistance, PositiveControl, Generalization, Stability, OverRefusal,
    Trainability, PostFinetuneSafety, JudgeValidity, KnowledgeResistance,
)
Check = Annotated[
    StrongResistance | WeakResistance | PositiveControl | Generalization | Stability
    | OverRefusal | Trainability | PostFinetuneSafety | JudgeValidity | KnowledgeResistance,
    Field(discriminator="check"),
]
CHECK_KINDS: tuple[str, ...] = tuple(
    str(c.model_fields["check"].annotation.__args__[0])  # type: ignore[union-attr]
    for c in CHECK_CLASSES)


CAPABILITY_SHARE = 0.08
CAPABILITY_MIN = 2
"""The default capability tolerance: what moved, with a margin (docs/reliability.md: with
MKL's generic path a stable trajectory's capability count moved by no item, a diverging
one's by at most 3 of 50, 6%, while its judged count moved by 62%)."""


class Reproducibility(Strict):
    """How far a measurement may move when the same cell runs again from the same seeds on
    other hardware, threads or kernels (docs/reliability.md measures it). `certify replay`
    compares within it; a check whose verdict flips when every count moves this far is
    reported as a limitation."""

    judged_share: float = Field(default=0.15, ge=0, le=1)
    """After training steps, a judged count may move by this share of its sample size, ..."""
    judged_min: int = Field(default=2, ge=0)
    """... or by this many items, whichever is larger."""
    untrained_judged: int = Field(default=0, ge=0)
    """Items a count of an unmodified model (step 0: baselines), judged or capability, may
    move. Measured: none moved under any setting; a replay on another device type may
    need 1 or 2."""
    capability_share: float = Field(default=CAPABILITY_SHARE, ge=0, le=1)
    """After training steps, a count of a capability evaluation (one that measures
    ``capability``: lm-eval's log-likelihood scoring) may move by this share of its sample
    size, ...

    Not the judged tolerance: that one was measured on judged generations, where one
    flipped token early in an answer changes the whole continuation and with it the
    judge's label, so a count moves by many items once a model is mid-way through a
    change. A log-likelihood multiple-choice score has no judge and no sampling: it is
    a deterministic function of the weights, and a re-run's slightly different weights
    move it only on items whose best two choices are nearly tied (docs/reliability.md
    measures how far). Nor the sampling interval: the capability bound already requires
    a drop to be confident (``stats.capability_drop``), and this tolerance answers
    another question, whether another machine would read the same items differently;
    moving the counts by the interval as well would count sampling noise twice. A
    generative lm-eval task (exact match on generated text) amplifies like a judged
    evaluation: a policy that bounds capability with one should raise this to
    ``judged_share``."""
    capability_min: int = Field(default=CAPABILITY_MIN, ge=0)
    """... or by this many items, whichever is larger."""
    loss_rel: float = Field(default=0.02, ge=0)
    """A recorded training loss may move by this relative amount."""
    break_checkpoints: int = Field(default=1, ge=0)
    """A break point may move by this many evaluated checkpoints."""

    def judged(self, n: int, trained: bool = True) -> int:
        """The count tolerance for a sample of ``n`` items, measured after training steps
        (``trained``) or on the unmodified model."""
        if not trained:
            return self.untrained_judged
        return max(self.judged_min, math.ceil(self.judged_share * n - 1e-9))

    def count(self, n: int, trained: bool, measures: str) -> int:
        """The tolerance of a count of ``n`` items by an evaluation that ``measures`` this:
        ``capability`` its own; anything else the judged one, including ``task`` (benign
        accuracy scores generated answers, which amplify as judged ones do) and
        ``knowledge`` (log-likelihood scored like capability, but not measured here)."""
        if measures != "capability" or not trained:
            return self.judged(n, trained)
        return max(self.capability_min, math.ceil(self.capability_share * n - 1e-9))


class Statistics(Strict):
    """How numbers become verdicts."""

    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    interval: Literal["wilson"] = "wilson"
    early_stop: bool = True
    """Stop a cell once every check reading it is decided; never changes a verdict."""
    reproducibility: Reproducibility = Field(default_factory=Reproducibility)

    @field_validator("confidence")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("confidence must be a finite number")
        return v


class Retention(Strict):
    min_days: int = Field(default=30, ge=0)
    rule: str = ""


class EvidenceSpec(Strict):
    """What the evidence and report must contain and how long it stays valid."""

    samples_per_eval: int = Field(default=5, ge=0, le=1000)
    """Random input/output samples shown per evaluation (EU CoP Measure 7.3(1)(f) asks ≥ 5)."""
    redact_harmful: bool = True
    """Redact text judged harmful in reports (the JSONL keeps hashes and full text)."""
    validity_days: int = Field(default=365, ge=1)
    retention: Retention = Field(default_factory=Retention)
    signing_required: bool = False
    """When true, an audit without --key ends incomplete (exit 3)."""


class Policy(Strict):
    """A certify policy: threat model, attack budgets, evaluations and pass/fail checks."""

    schema_version: Literal[1] = 1
    id: Slug
    version: str = "0.1.0"
    title: str
    extends: str | None = None
    """A shipped policy name or a path this policy overrides (merged before validation)."""
    meta: PolicyMeta = Field(default_factory=PolicyMeta)
    clause_map: list[Clause] = Field(default_factory=list)
    threat_model: ThreatModel = Field(default_factory=ThreatModel)
    reference: str | None = None
    """Default reference model (the undefended positive control); --reference overrides."""
    attacks: list[AttackEntry] = Field(min_length=1)
    evaluations: dict[Slug, EvaluationEntry] = Field(min_length=1)
    baseline: list[str] | None = None
    """Evaluations run on each unmodified model; default: all of them."""
    checks: list[Check] = Field(min_length=1)
    statistics: Statistics = Field(default_factory=Statistics)
    evidence: EvidenceSpec = Field(default_factory=EvidenceSpec)
    limitations: list[str] = Field(default_factory=list)
    out_of_scope: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        for what, ids in (("attack", [a.id for a in self.attacks]),
                          ("check", [c.id for c in self.checks])):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} ids: {', '.join(dupes)}")
        base = self.baseline or []
        if len(set(base)) != len(base):
            raise ValueError("baseline names an evaluation more than once; results are keyed "
                             "by evaluation id, so name each once")
        return self

    def baseline_evals(self) -> list[str]:
        return list(self.baseline) if self.baseline is not None else list(self.evaluations)

    def attack(self, attack_id: str) -> AttackEntry:
        return next(a for a in self.attacks if a.id == attack_id)
