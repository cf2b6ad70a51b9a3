"""The harm curves' legend tells seeds apart and thresholds at one value are one line
(issue 15, defect 8)."""

from __future__ import annotations

from certify.report.plots import Series, _draw, merge_equal


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
