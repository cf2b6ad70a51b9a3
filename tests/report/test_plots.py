"""The harm curves' legend tells seeds apart and thresholds at one value are one line
(issue 15, defect 8); labels name what tells cells apart, and a figure draws the rate its
checks read (issue 12)."""

from __future__ import annotations

from typing import Any

from certify.report.plots import Series, _draw, cell_labels, harm_metrics, merge_equal


def _series(role: str, seed: int) -> Series:
    return Series(role, f"{role} seed {seed}", [0, 4, 8], [0.0, 0.4, 0.9], [0.0, 0.3, 0.8],
                  [0.1, 0.5, 1.0], 2)


def test_legend_tells_the_seeds_of_a_role_apart() -> None:
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    series = [_series("candidate", 0), _series("candidate", 1), _series("reference", 0),
              _series("reference", 1)]
    _draw(ax, series, [("strong-resistance: max 50%", 0.5)], "t")
    handles = {h.get_label(): h for h in ax.get_legend().legend_handles}
    for role in ("candidate", "reference"):
        a, b = handles[f"{role} seed 0"], handles[f"{role} seed 1"]
        # A marker shows in a short legend line where a dash pattern may not.
        assert a.get_marker() != b.get_marker()
        assert a.get_color() == b.get_color()


def test_thresholds_at_one_value_draw_as_one_labelled_line() -> None:
    lines = [("strong-resistance: max 50%", 0.5), ("weak-resistance: break level 50%", 0.5),
             ("generalization: max 30%", 0.3)]
    assert merge_equal(lines) == [
        ("strong-resistance: max 50%; weak-resistance: break level 50%", 0.5),
        ("generalization: max 30%", 0.3)]


def _cell(cell_id: str, role: str, seed: int, lr: float, attack: str = "relearn") -> Any:
    from certify.evidence import CellRecord

    return CellRecord(id=cell_id, role=role, attack_id=attack, technique="relearning",
                      purpose="harmful", params={"dataset": "d", "learning_rate": lr},
                      seed=seed, max_steps=8, status="ok")


def test_labels_name_what_tells_the_cells_apart() -> None:
    """Two candidate cells of one seed at two learning rates get two labels; a parameter
    every cell shares is not repeated, and without a sweep the label stays short."""
    sweep = [_cell("a", "candidate", 0, 3e-4), _cell("b", "candidate", 0, 1e-3),
             _cell("c", "reference", 0, 3e-4), _cell("d", "reference", 1, 1e-3)]
    labels = cell_labels(sweep)
    assert labels == {"a": "candidate lr 0.0003, seed 0", "b": "candidate lr 0.001, seed 0",
                      "c": "reference lr 0.0003, seed 0", "d": "reference lr 0.001, seed 1"}
    assert cell_labels(sweep[:1] + [_cell("e", "candidate", 1, 3e-4)]) == {
        "a": "candidate seed 0", "e": "candidate seed 1"}
    mixed = cell_labels([_cell("a", "candidate", 0, 1e-3), _cell("f", "candidate", 0, 1e-3,
                                                                  "relearn-qa")])
    assert mixed == {"a": "candidate relearn, seed 0", "f": "candidate relearn-qa, seed 0"}


def test_a_figure_draws_the_rate_its_checks_read() -> None:
    from certify.policy.schema import Policy

    def policy(*metrics: str) -> Policy:
        return Policy.model_validate({
            "id": "t", "title": "t",
            "attacks": [{"id": "sft", "attack": "sft", "checkpoints": [8]}],
            "evaluations": {"harm": {"eval": "harmfulness", "params": {"judges": ["canary"]}}},
            "checks": [{"id": f"c{i}", "check": "strong_resistance", "eval": "harm",
                        "max_rate": 0.5, "metric": m} for i, m in enumerate(metrics)]})

    assert harm_metrics(policy("harmful"), "harm") == ["harmful"]
    assert harm_metrics(policy("harmful", "harmful_uplift"), "harm") == [
        "harmful_uplift", "harmful"]
    assert harm_metrics(policy("harmful_uplift"), "harm") == ["harmful_uplift", "harmful"]
