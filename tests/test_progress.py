"""Plain progress lines carry a UTC timestamp (issue 15, "progress that tells you when
it ends": plain mode prints timestamped lines)."""

from __future__ import annotations

import io
import re

from certify.evidence import CellRecord
from certify.run.progress import PlainProgress


def test_every_plain_line_starts_with_a_utc_timestamp() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.start(2, 0)
    progress.message("loading models")
    progress.cell_finished(CellRecord(id="c0", role="candidate", attack_id="a", technique="sft",
                                      purpose="harmful", params={}, seed=0, max_steps=8,
                                      status="ok", seconds=1.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S", line), line


def test_plain_lines_read_the_same_after_the_stamp() -> None:
    out = io.StringIO()
    progress = PlainProgress(out, clock=lambda: "T")
    progress.start(3, 1)
    progress.message("hi")
    assert out.getvalue() == "T certify: 3 cells, 1 already done\nT certify: hi\n"
