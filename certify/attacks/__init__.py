"""Attacks: one linear recipe per technique, registered by name (see `certify list attacks`).

Whether the data is harmful or benign is a parameter (the dataset), not a new attack.
So two attacks of the literature are *recipes* of the registered techniques rather
than techniques of their own:

- **Benign drift** (Qi et al. 2023, tier 3): ``sft`` (or ``lora``) on benign
  instruction data with ``purpose: benign``; the ``post_finetune_safety`` check
  reads its harmfulness::

      - {id: benign-drift, attack: sft, purpose: benign,
         params: {dataset: builtin:benign-train}}

- **Identity shift** (Qi et al. 2023, AOA): ``sft`` on a few benign-looking
  examples that install an obedient persona, evaluated by a harmfulness
  evaluation whose ``prompt_prefix`` (or ``system_prompt``) carries the persona::

      - {id: identity-shift, attack: sft, params: {dataset: builtin:identity-shift},
         evaluate: [harm_aoa]}

Registered techniques: ``sft``, ``lora`` (finetune), ``poisoned_mix``
(poisoned_mix), ``cipher`` (covert cipher), ``search`` (worst-case search),
``jailbreak_tuning`` (jailbreak_tuning), ``multilingual`` (multilingual),
``relearning`` (relearning: language modelling on hazard-domain documents, gated by
the knowledge evaluation), ``refusal_ablation`` (refusal_ablation: a training-free
weight edit, its budget in samples), ``embedding_attack`` (embedding_attack: a soft
prompt trained through the frozen model), and the ``none`` baseline.
"""
