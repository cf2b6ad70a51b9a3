"""The attack contract: everything an attack recipe may do, and nothing else.

A recipe is a function ``fn(run: AttackRun, params) -> None`` registered with
``@registry.attack(name, params=..., cost=...)``. The runner of a cell
(``certify.run.cell.CellRun``) implements :class:`AttackRun`; a recipe reads its
properties and calls its methods and never sets anything on it. What the recipe does
with a model decides what the evidence records:

- training: ``trainable_model()`` (every weight; about 6·N FLOP per trained token) or
  ``adapters(...)`` (LoRA; about 4·N), then ``train(...)``, which evaluates the model
  at the cell's checkpoints and may stop early;
- training something else through frozen weights (soft prompts): ``frozen_model()``
  (about 4·N per token) and ``train(...)`` on a module that wraps it;
- a weight edit without training: modify ``trainable_model()`` in place (restored after
  the cell), then ``hand_back(model, Spend(samples=...))``: one evaluation, charged what
  the edit spent; or one ``hand_back(..., step=n)`` per checkpoint, when the budget axis
  is the edit's samples (``refusal_ablation``: registered with ``trajectory="n_samples"``);
- evaluating the unmodified model: ``hand_back(frozen_model(), Spend())``;
- changing what is asked at evaluation time: ``transform_prompts(...)`` before the first
  evaluation (a jailbreak wrapper, a trigger, a translation);
- a search: ``trial(body)`` runs ``body`` from the cell's unmodified model and seed and
  reports its harm trajectory; ``keep(trial)`` makes one trial the cell's result;
  ``study_path()`` is where the search keeps its study so a killed cell resumes at the
  trial level.

The unit in which an attack's budget is counted (``steps``, ``samples`` or
``optimisation_steps``) is declared with its registration (``cost=``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from certify.data.load import DatasetRef
from certify.evidence import EarlyStop
from certify.models.chat import PromptTransform
from certify.stats import Metric

if TYPE_CHECKING:
    from certify.train import Example, Optim, TrainState

CostUnit = Literal["steps", "samples", "optimisation_steps"]
"""The units of ``registry.ATTACK_COSTS``."""
Batch = tuple[Any, Any, Any]
"""(input_ids, attention_mask, labels), as ``certify.train.batches`` yields them."""

__all__ = ["Adapters", "AttackRun", "Batch", "CostUnit", "PromptTransform",
           "Spend", "Trial"]


@dataclass(frozen=True)
class Spend:
    """What an attack spent to produce a model it hands back without training."""

    samples: int = 0
    tokens: int = 0
    flop: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class Adapters:
    """LoRA adapters (peft) to train on the frozen model; its weights stay untouched."""

    rank: int
    alpha: int | None = None
    """Default: twice the rank."""
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"


@dataclass(frozen=True)
class Trial:
    """One sub-trial of a search, run from the cell's unmodified model and seed."""

    rates: dict[str, list[tuple[int, float]]]
    """eval id → (step, harmful rate) at each checkpoint that measured it."""
    checkpoints: list[int]
    final_loss: float | None
    early_stop: EarlyStop | None
    outcome: object
    """The trial's records, for :meth:`AttackRun.keep` (opaque to recipes)."""
    metrics: dict[str, list[tuple[int, dict[str, Metric]]]] = field(default_factory=dict)
    """eval id → (step, every metric) per checkpoint, e.g. capability's ``acc``, with its
    counts and interval (what a capability bound compares)."""


class AttackRun(Protocol):
    """What a recipe may read and do. Implemented by ``certify.run.cell.CellRun``."""

    @property
    def seed(self) -> int:
        """The cell's seed (data order, sampling, adapter initialisation)."""
        ...

    @property
    def checkpoints(self) -> list[int]:
        """The cell's checkpoint steps, ending at max_steps."""
        ...

    @property
    def confidence(self) -> float:
        """The policy's confidence level (``statistics.confidence``): a recipe that judges
        measurements itself (a search's capability bound) judges them at the level the
        checks use, so the objective and the verdict agree on what is confident."""
        ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def device(self) -> str: ...

    @property
    def measures(self) -> dict[str, str]:
        """Evaluation id → what it measures (harm, task, ...), for the evaluations run at
        every checkpoint, in the policy's order."""
        ...

    @property
    def evaluators(self) -> Mapping[str, object]:
        """The cell's evaluators by id (read only: e.g. to find a cipher-aware one)."""
        ...

    def examples(self, ref: DatasetRef, n: int | None, categories: list[str] | None = None,
                 system: str | None = None) -> list[Example]:
        """``n`` distinct (prompt, response) examples drawn with the cell's seed (all when
        None); the evidence records the dataset and the categories used."""
        ...

    def documents(self, ref: DatasetRef, n: int | None,
                  categories: list[str] | None = None) -> list[str]:
        """``n`` distinct documents drawn with the cell's seed (all when None): each row's
        ``response`` (its ``prompt``, when not empty, before it), for plain language
        modelling; the evidence records the dataset, the categories and the overlap with
        the cell's evaluations, as for ``examples``."""
        ...

    def trainable_model(self, local: bool = False) -> Any:
        """The model with every weight trainable, restored from a snapshot after the cell.
        With ``--fsdp`` a sharded copy that the whole gang trains, unless ``local``: the
        model of this process, for a weight edit that trains nothing."""
        ...

    def adapters(self, spec: Adapters) -> AbstractContextManager[Any]:
        """Fresh LoRA adapters on the frozen model (unloaded on exit)."""
        ...

    def frozen_model(self) -> Any:
        """The model with frozen weights (to evaluate, or to train something through)."""
        ...

    def train(self, model: Any, batches: Iterator[Batch], optim: Optim, batch_size: int,
              checkpoints: Sequence[int] | None = None) -> TrainState:
        """Train ``model`` on global batches to ``optim.max_steps``, evaluating it at
        ``checkpoints`` (default: the cell's); stops early once the checks are decided."""
        ...

    def hand_back(self, model: Any, spend: Spend, step: int | None = None) -> bool:
        """Evaluate a model made without training, charged ``spend``: at ``step``, one of the
        cell's checkpoints (a weight edit whose budget axis is samples hands back one model
        per checkpoint), by default once as the final checkpoint. True when the cell's
        checks are decided and it should stop (early stopping, as in training)."""
        ...

    def transform_prompts(self, transform: PromptTransform,
                          evals: Sequence[str] | None = None) -> None:
        """Rewrite the prompts of the cell's evaluations ``evals`` (default: all) from now
        on; the others still ask the original prompts (e.g. a translation beside English)."""
        ...

    def note(self, **values: Any) -> None:
        """Attack-specific disclosures for the evidence (e.g. cipher competence)."""
        ...

    def trial(self, body: Callable[[AttackRun], TrainState | None]) -> Trial:
        """Run ``body`` as one sub-trial from the unmodified model and the cell's seed
        (prompt transforms it sets end with it)."""
        ...

    def keep(self, trial: Trial) -> None:
        """Make ``trial``'s checkpoints, samples and early stop the cell's result."""
        ...

    def study_path(self) -> Path | None:
        """A file in the run directory that outlives a kill of this cell, for a search's
        study (None where the cell keeps nothing: Ray, FSDP-sharded cells, bare workers)."""
        ...
