"""Policies: the threat model, attack budgets and thresholds an audit is held to."""

from certify.policy.load import LoadedPolicy, load_policy, resolve, shipped_names
from certify.policy.schema import AttackEntry, Policy

__all__ = ["AttackEntry", "LoadedPolicy", "Policy", "load_policy", "resolve", "shipped_names"]
