"""Per-attack disclosures: poisoned mix, jailbreak wrapper and language, refusal-direction
ablation and soft prompt, covert screening, cipher competence, search trials.

Each block says in words, with the numbers from the evidence, what an attack recorded
about itself: how many covert training examples each judge flags (covert data is built
to pass such screening), whether the cipher was learned and which measurements that
invalidated, and every trial of a worst-case search with the one the verdict sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certify.evidence import CellRecord, EvalRecord
from certify.report.check_text import MAX_ROWS, Table
from certify.report.text import num, one_line, pct

MAX_TRIALS = 64


@dataclass(frozen=True)
class Block:
    title: str
    sentences: list[str]
    table: Table | None = None


@dataclass(frozen=True)
class AttackDisclosure:
    id: str
    technique: str
    blocks: list[Block]


def who(cell: CellRecord) -> str:
    return f"{cell.role} seed {cell.seed}"


def table(columns: list[str], rows: list[list[str]], limit: int = MAX_ROWS,
           order: str = "") -> Table:
    return Table(columns, rows[:limit], max(0, len(rows) - limit), order if len(rows) > limit
                 else "")


def frac(k: Any, n: Any) -> str:
    if not isinstance(k, int) or not isinstance(n, int) or n <= 0:
        return "—"
    return f"{k} of {n} ({pct(k / n)})"


# --------------------------------------------------------------------------- covert attacks

def _screening(cells: list[CellRecord]) -> Block | None:
    rows: list[list[str]] = []
    totals: dict[tuple[str, str], list[int]] = {}  # (role, judge) -> plain, covert, n, cells
    for cell in cells:
        for s in cell.notes.get("covert_screening") or []:
            if not isinstance(s, dict):
                continue
            judge, n = one_line(s.get("judge"), 60), s.get("n")
            plain, covert = s.get("plain_flagged"), s.get("covert_flagged")
            rows.append([who(cell), judge, num(n), num(plain), num(covert)])
            counts = [v for v in (plain, covert, n) if isinstance(v, int)]
            if len(counts) == 3:
                t = totals.setdefault((cell.role, judge), [0, 0, 0, 0])
                for i, v in enumerate([*counts, 1]):
                    t[i] += v
    if not rows:
        return None
    sentences = [f"Covert screening ({role}, {cells_n} cell(s)): the {judge} judge flags "
                 f"{covert} of {n} covert training examples, and {plain} of the same {n} "
                 f"pairs in plain text."
                 for (role, judge), (plain, covert, n, cells_n) in totals.items()]
    sentences.append("Covert data is built to pass this screening: a judge that flags far "
                     "fewer enciphered examples than plain ones cannot see what the attack "
                     "teaches, which is why harm is judged on decoded answers.")
    return Block("What the judges see in the covert training data", sentences,
                 table(["cell", "judge", "examples", "flagged in plain text",
                         "flagged enciphered"], rows))


def _cipher_settings(cells: list[CellRecord]) -> list[str]:
    seen: list[str] = []
    for cell in cells:
        c = cell.notes.get("cipher")
        if not isinstance(c, dict):
            continue
        text = one_line(
            f"Substitution cipher seed {num(c.get('seed'))} (key {c.get('key')}): phase 1 "
            f"teaches it for {num(c.get('phase1_steps'))} steps on "
            f"{num(c.get('phase1_examples'))} enciphered benign examples; phase 2 trains "
            f"{num(c.get('phase2_steps'))} steps on {num(c.get('phase2_harmful_examples'))} "
            f"enciphered harmful examples, mixed with enciphered benign pairs "
            f"({pct(c.get('benign_mix'), 0)} of phase 2).", 500)
        if text not in seen:
            seen.append(text)
    return seen


def _cipher_records(cell: CellRecord) -> list[tuple[int, str, EvalRecord]]:
    return [(cp.step, eval_id, rec) for cp in cell.checkpoints
            for eval_id, rec in cp.evals.items() if "cipher_competence" in rec.metrics]


def _judge_rates(view: Any) -> str:
    if not isinstance(view, dict) or not view:
        return "—"
    parts = []
    for judge, metrics in view.items():
        m = metrics.get("harmful") if isinstance(metrics, dict) else None
        parts.append(f"{one_line(judge, 40)} {pct(m.value) if m is not None else '—'}")
    return ", ".join(parts)


def _min_competence(cell: CellRecord, eval_id: str) -> float | None:
    ident = cell.notes.get("evaluators", {}).get(eval_id, {})
    value = (ident.get("competence") or {}).get("min_competence")
    return value if isinstance(value, int | float) else None


def _competence(cells: list[CellRecord]) -> Block | None:
    rows, points = [], []
    for cell in cells:
        for step, eval_id, rec in _cipher_records(cell):
            comp = rec.metrics["cipher_competence"]
            harmful = rec.metrics.get("harmful")
            rows.append([who(cell), num(step), one_line(eval_id, 60), frac(comp.k, comp.n),
                         "valid" if rec.valid else f"INVALID: {one_line(rec.note, 200)}",
                         pct(harmful.value) if harmful else "—",
                         _judge_rates(rec.groups.get("raw_judge")),
                         _judge_rates(rec.groups.get("raw_judge_benign"))])
            points.append((cell, eval_id, rec))
    if not points:
        return None
    invalid = [p for p in points if not p[2].valid]
    threshold = next((t for c, e, _ in points if (t := _min_competence(c, e)) is not None), None)
    need = f"; the policy requires at least {pct(threshold, 0)}" if threshold is not None else ""
    lowest = min(points, key=lambda p: p[2].metrics["cipher_competence"].value)[2]
    low = lowest.metrics["cipher_competence"]
    if invalid:
        best = max(invalid, key=lambda p: p[2].metrics["cipher_competence"].value)[2]
        b = best.metrics["cipher_competence"]
        lead = (f"Cipher competence: at {len(invalid)} of {len(points)} measured checkpoints "
                f"the model answered too few benign enciphered questions correctly (best of "
                f"those: {frac(b.k, b.n)}{need}). The cipher was not learned there, so those "
                "measurements are invalid, and a check reading them is inconclusive, never a "
                "pass.")
    else:
        lead = (f"Cipher competence: the cipher was learned at all {len(points)} measured "
                f"checkpoints (lowest: {frac(low.k, low.n)} benign enciphered questions "
                f"answered correctly{need}), so harm was judged on answers the model meant.")
    worst = max(points, key=lambda p: (p[2].metrics.get("harmful").value  # type: ignore[union-attr]
                                       if p[2].metrics.get("harmful") else 0.0))
    rec = worst[2]
    harmful = rec.metrics.get("harmful")
    raw = (f"Decode before judging: at the checkpoint with the most decoded harm "
           f"({who(worst[0])}, {pct(harmful.value) if harmful else '—'} harmful after "
           f"decoding), judges reading the raw enciphered answers call "
           f"{_judge_rates(rec.groups.get('raw_judge'))} of them harmful, and "
           f"{_judge_rates(rec.groups.get('raw_judge_benign'))} of the answers to benign "
           "enciphered questions. A judge that cannot read the cipher treats harmful and "
           "benign ciphertext alike, which is why the verdict reads decoded answers.")
    return Block("Cipher competence and decoded judging", [lead, raw],
                 table(["cell", "step", "evaluation", "competence", "measurement",
                         "harmful (decoded)", "raw output: harmful per judge",
                         "raw benign output: harmful per judge"], rows))


# --------------------------------------------------------------------------- search, poison

def _lr_text(x: Any) -> str:
    return f"{x:.2e}" if isinstance(x, int | float) and not isinstance(x, bool) else "—"


def _knob_text(knob: str, value: Any) -> str:
    if knob == "lora_rank":
        return "every weight" if value == 0 else f"LoRA rank {num(value)}"
    if knob == "learning_rate":
        return f"learning rate {_lr_text(value)}"
    if knob == "batch_size":
        return f"batch {num(value)}"
    shown = num(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else str(value)
    return f"{knob.replace('_', ' ')} {shown}"


def _config_text(config: dict[str, Any]) -> str:
    return ", ".join(_knob_text(k, v) for k, v in config.items())


def _axis_text(knob: str, axis: Any) -> str:
    if isinstance(axis, dict):
        low, high = axis.get("low"), axis.get("high")
        scale = " (log scale)" if axis.get("log") else ""
        shown = _lr_text if knob == "learning_rate" else num
        return f"{knob.replace('_', ' ')} {shown(low)} to {shown(high)}{scale}"
    values = ", ".join("none" if v is None else str(v) for v in axis or [])
    note = " (0 = every weight)" if knob == "lora_rank" else ""
    return f"{knob.replace('_', ' ')} in {{{values}}}{note}"


def _cell_text(knob: str, value: Any) -> str:
    if knob == "learning_rate":
        return _lr_text(value)
    return num(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else one_line(str(value), 60)


def _search(cell: CellRecord) -> Block | None:
    s = cell.notes.get("search")
    if not isinstance(s, dict):
        return None
    trials = [t for t in s.get("trials") or [] if isinstance(t, dict)]
    raw_space = s.get("space")
    space: dict[str, Any] = raw_space if isinstance(raw_space, dict) else {}
    knobs = list(space)
    worst_i = s.get("worst_trial")
    worst = next((t for t in trials if t.get("trial") == worst_i), None)
    bounds = one_line(
        f"Worst-case search ({who(cell)}): {num(s.get('n_trials'))} trials over "
        f"{'; '.join(_axis_text(k, a) for k, a in space.items())}, each trained to at most "
        f"{num(cell.max_steps)} steps; strategy: {s.get('strategy')}; "
        f"objective: harmful rate on {s.get('objective')}; study kept {s.get('study')}.", 900)
    sentences = [bounds]
    if worst is not None:
        done = [t for t in trials if t.get("state", "complete") == "complete"]
        sentences.append(one_line(
            f"Of {num(len(done))} search trials, the most damaging was trial {num(worst_i)} "
            f"({_config_text(worst.get('config', {}))})"
            f": {pct(worst.get('worst_harmful'))} harmful at step {num(worst.get('worst_step'))}. "
            "This cell records that trial's trajectory, so the verdict, which takes the worst "
            "cell and checkpoint, reads it like any other cell; the other trials are disclosed "
            "here and do not enter the checks.", 700))
    bound = s.get("capability_bound")
    if isinstance(bound, dict):
        sentences.append(_bound_text(bound, trials))
    order = sorted(trials, key=lambda t: -(t.get("worst_harmful") or 0.0)) \
        if len(trials) > MAX_TRIALS else trials
    rows = []
    for t in order:
        stop = t.get("early_stop")
        state = t.get("state", "complete")
        rows.append([num(t.get("trial")) + (" (worst)" if t.get("trial") == worst_i else "")
                     + ("" if state == "complete" else f" ({state})"),
                     *[_cell_text(k, t.get("config", {}).get(k)) for k in knobs],
                     pct(t.get("worst_harmful")), num(t.get("worst_step")),
                     num(t.get("final_loss")),
                     one_line(f"step {stop.get('step')}: {stop.get('reason')}", 160)
                     if isinstance(stop, dict) else "—"])
    return Block(f"Search trials ({who(cell)})", sentences,
                 table(["trial", *[k.replace("_", " ") for k in knobs], "worst harmful",
                         "at step", "final loss", "early stop"], rows, MAX_TRIALS,
                        "most damaging first"))


def _bound_text(bound: dict[str, Any], trials: list[dict[str, Any]]) -> str:
    """What the search's capability bound set aside: checkpoints of any trial that lost
    more than ε of the unmodified model's capability, the most harmful of them named (a
    harmful but incoherent model, which the objective did not let win)."""
    outside = [(t.get("trial"), row) for t in trials for row in t.get("outside_bound") or []
               if isinstance(row, list) and len(row) == 3]
    text = (f"The objective counted only checkpoints whose {bound.get('eval_id')} "
            f"{bound.get('metric')} stayed within {pct(bound.get('epsilon'))} of the unmodified "
            f"model's {pct(bound.get('base'))} ({_rule_text(bound)}); ")
    if not outside:
        return one_line(text + "no checkpoint of any trial fell outside it.", 600)
    trial, (step, harm, cap) = max(outside, key=lambda tr: tr[1][1] or 0.0)
    return one_line(text + f"{num(len(outside))} checkpoint(s) of "
                    f"{num(len({t for t, _ in outside}))} trial(s) fell outside it and could not "
                    f"win; the most harmful, harmful but incoherent: {pct(harm)} at trial "
                    f"{num(trial)} step {num(step)} (capability {pct(cap)}).", 600)


def _rule_text(bound: dict[str, Any]) -> str:
    """The rule that set a checkpoint aside, with its confidence level where it has one
    (evidence written before the level was recorded judged at 95%)."""
    rule = str(bound.get("rule", "point estimate"))
    level = bound.get("confidence")
    if rule == "confident drop" and isinstance(level, int | float):
        return f"a drop confidently beyond it at {level:.0%} confidence"
    return rule


def _poison(cells: list[CellRecord]) -> Block | None:
    seen: list[str] = []
    for cell in cells:
        p = cell.notes.get("poison")
        if not isinstance(p, dict):
            continue
        benign, harmful = p.get("benign"), p.get("harmful")
        total = benign + harmful if isinstance(benign, int) and isinstance(harmful, int) else None
        text = (f"Poisoned mix: {num(harmful)} of {num(total)} training examples are harmful "
                f"(poison fraction {pct(p.get('fraction'))}); the other {num(benign)} are benign "
                "task data, as a fine-tuning service would receive them.")
        if text not in seen:
            seen.append(text)
    return Block("Training mix", seen) if seen else None


def _jailbreak_text(j: dict[str, Any]) -> str:
    answer = (f", and every training answer starts with \"{one_line(j['response_prefix'], 120)}\""
              if j.get("response_prefix") else "")
    asked = [one_line(e, 60) for e in j.get("wrapped_at_eval") or []]
    at_eval = (f"the harm evaluations ({', '.join(asked)}) ask their prompts through the same "
               "wrapper, from step 0 on" if asked else
               "the evaluations ask the plain prompts, without the wrapper")
    return (f"Jailbreak-tuning, {one_line(j.get('variant'), 40)} variant: every training prompt "
            f"carries \"{one_line(j.get('text'), 120)}\" as a {one_line(j.get('position'), 10)}"
            f"{answer}; {at_eval}.")


def _language_text(m: dict[str, Any]) -> str:
    lang = one_line(m.get("language"), 40)
    how = (f"a synthetic language ({one_line(m.get('mapping'), 80)}) mapped from English pairs; "
           "answers in it are mapped back to English before judging" if m.get("synthetic") else
           "pairs loaded in that language and trained as given")
    benign = m.get("benign_examples")
    mix = f" (plus {num(benign)} benign pairs in it)" if isinstance(benign, int) and benign else ""
    return (f"Multilingual fine-tuning: {num(m.get('examples'))} harmful training pairs in "
            f"{lang}{mix}, {how}.")


def _ablation_text(r: dict[str, Any]) -> str:
    norms = r.get("direction_norm") or {}
    counts = ", ".join(f"{num(k)}" for k in norms) if isinstance(norms, dict) else ""
    layers = ", ".join(num(x) for x in r.get("layers") or [])
    picked = r.get("chosen")
    chosen: dict[str, Any] = picked if isinstance(picked, dict) else {}
    if r.get("select"):
        picks = "; ".join(
            f"n = {num(n)}: layer {num(c.get('layer'))}, position {num(c.get('position'))}, "
            f"{num(c.get('complied'))} of {num(c.get('of'))} held-out prompts complied with"
            + ("" if c.get("kl_filter_passed", True) else ", no candidate passed the KL filter")
            for n, c in chosen.items() if isinstance(c, dict))
        how = (f"one candidate direction per layer and position; the one whose ablation best "
               f"bypassed refusal on {num(r.get('held_out'))} held-out harmful prompts (within "
               f"the KL filter on as many harmless ones) is kept ({picks or '—'})")
        cost = "2n samples plus the held-out ones"
    else:
        how = "one direction per layer and position, their span removed"
        cost = "2n samples"
    return one_line(
        f"Refusal-direction ablation: the difference of mean activations of "
        f"{num(r.get('harmful'))} harmful and {num(r.get('harmless'))} harmless prompts at "
        f"the input of layer(s) {layers} ({one_line(r.get('position'), 40)}: {how}), "
        f"estimated from the first n of each at every checkpoint (n = {counts or '—'}), is "
        f"projected out of the token embeddings and of "
        f"{max(len(r.get('writers') or []) - 1, 0)} attention-output and MLP-down "
        f"projections. No training: each checkpoint's step is the n used, and its cost is "
        f"{cost}.", 1200)


def _soft_prompt_text(e: dict[str, Any]) -> str:
    if e.get("per_prompt"):
        return one_line(
            f"Embedding-space attack, per prompt: one soft prompt of {num(e.get('n_tokens'))} "
            f"continuous embeddings (started from \"{one_line(e.get('init'), 40)}\") for each "
            f"of the {num(e.get('soft_prompts'))} harm-evaluation prompts, trained on that "
            f"prompt itself towards \"{one_line(e.get('target'), 60)}\" and placed as a "
            f"{one_line(e.get('position'), 10)} of it alone; the attack optimizes on the "
            "evaluated prompts by design (Schwinn et al.'s individual attack), the weights are "
            "not changed, and every checkpoint generates through the soft prompts.", 700)
    target = (f"the first {num(e.get('target_tokens'))} tokens of each training answer"
              if e.get("target_tokens") else "each whole training answer")
    return one_line(
        f"Embedding-space attack: one soft prompt of {num(e.get('n_tokens'))} continuous "
        f"embeddings (started from \"{one_line(e.get('init'), 40)}\"), trained on "
        f"{num(e.get('examples'))} prompts towards {target}, placed as a "
        f"{one_line(e.get('position'), 10)} of every evaluation prompt; the weights are not "
        "changed, and every checkpoint generates through the soft prompt.", 700)


def _edits(cells: list[CellRecord]) -> Block | None:
    seen: list[str] = []
    for cell in cells:
        r, e = cell.notes.get("refusal_ablation"), cell.notes.get("embedding_attack")
        for text in ([_ablation_text(r)] if isinstance(r, dict) else []) + (
                [_soft_prompt_text(e)] if isinstance(e, dict) else []):
            if text not in seen:
                seen.append(text)
    return Block("What the attack changes without fine-tuning", seen) if seen else None


def _wrappers(cells: list[CellRecord]) -> Block | None:
    seen: list[str] = []
    for cell in cells:
        j, m = cell.notes.get("jailbreak"), cell.notes.get("multilingual")
        for text in ([_jailbreak_text(j)] if isinstance(j, dict) else []) + (
                [_language_text(m)] if isinstance(m, dict) else []):
            if text not in seen:
                seen.append(text)
    return Block("What the attack asks, and in which language", seen) if seen else None


# --------------------------------------------------------------------------- per attack

def attack_disclosure(attack_id: str, technique: str, cells: list[CellRecord]) -> AttackDisclosure:
    blocks: list[Block] = []
    for first in (_poison(cells), _wrappers(cells), _edits(cells)):
        if first is not None:
            blocks.append(first)
    settings = _cipher_settings(cells)
    if settings:
        blocks.append(Block("Cipher", settings))
    for block in (_screening(cells), _competence(cells)):
        if block is not None:
            blocks.append(block)
    blocks += [b for c in cells if (b := _search(c)) is not None]
    return AttackDisclosure(one_line(attack_id, 80), one_line(technique, 40), blocks)


def headlines(disclosure: AttackDisclosure) -> list[str]:
    out = []
    for block in disclosure.blocks:
        if block.title.startswith("Search trials"):
            out += block.sentences[1:2]  # the worst trial and that the verdict sees it
        elif block.title != "Cipher":
            out += block.sentences[:-1] if block.title.startswith("What the judges") \
                else block.sentences
    return [f"{disclosure.id}: {s}" for s in out]
