"""junit.xml: one test case per policy check, for CI test-report widgets.

A failed or inconclusive required check is a failure (both fail the gate), an
errored check is an error, and an optional check that did not pass is skipped with
its verdict. The failure message carries the observed value against the threshold;
a passing check carries the same line and its reason in ``system-out``.

Times are the cells' measured seconds, from the evidence (so ``certify render``
rebuilds the file exactly). A case's time is its share of the cells its verdict read
(the attacks its rows name, else the baseline cells): a cell read by k checks counts
1/k towards each, so the suite's time, the sum of its cases', is the seconds of the
cells the checks read, not k times over.
"""

from __future__ import annotations

import io

from certify.evidence import CellRecord, CheckResult, Evidence
from certify.report.check_text import observed_text, threshold_text
from certify.report.text import one_line


def _cells_read(check: CheckResult, cells: list[CellRecord]) -> list[str]:
    """Ids of the cells the check read: those of the attacks its rows or observed point
    name, else the baseline cells (stability, over-refusal and judge validity read those)."""
    points = [*check.rows, *(v for v in check.observed.values() if isinstance(v, dict))]
    attacks = {p["attack"] for p in points if isinstance(p.get("attack"), str)}
    return [c.id for c in cells
            if (c.attack_id in attacks if attacks else c.purpose == "baseline")]


def _times(checks: list[CheckResult], cells: list[CellRecord]) -> dict[str, float]:
    """Each check's share of the seconds of the cells it read."""
    read = {check.id: _cells_read(check, cells) for check in checks}
    readers: dict[str, int] = {}
    for ids in read.values():
        for cell_id in ids:
            readers[cell_id] = readers.get(cell_id, 0) + 1
    seconds = {c.id: c.seconds for c in cells}
    return {check_id: round(sum(seconds[i] / readers[i] for i in ids), 3)
            for check_id, ids in read.items()}


def _case(check: CheckResult, policy_id: str, time: float):  # type: ignore[no-untyped-def]
    from junitparser import Error, Failure, Skipped, TestCase

    case = TestCase(name=check.id, classname=f"certify.{policy_id}.{check.condition}",
                    time=time)
    message = one_line(f"{check.verdict.upper()}: observed {observed_text(check)} vs threshold "
                       f"{threshold_text(check)}", 600)
    if check.verdict == "pass":
        case.system_out = f"{message}\n{one_line(check.reason, 2000)}"
        return case
    if not check.required:
        case.result = [Skipped(message=f"optional check, {message}")]
    elif check.verdict == "error":
        case.result = [Error(message=message, type_="error")]
    else:
        case.result = [Failure(message=message, type_=check.verdict)]
    case.result[0].text = one_line(check.reason, 2000)
    return case


def render_junit(evidence: Evidence) -> bytes:
    from junitparser import Error, JUnitXml, TestCase, TestSuite

    policy_id = str(evidence.policy.get("id"))
    suite = TestSuite(f"certify {policy_id}")
    suite.timestamp = str(evidence.run.get("collected") or evidence.run.get("created") or "")
    candidate = evidence.models.get("candidate") or {}
    properties = {"verdict": evidence.verdict.overall if evidence.verdict else "incomplete",
                  "exit_code": str(evidence.verdict.exit_code if evidence.verdict else 3),
                  "policy": f"{policy_id} {evidence.policy.get('version', '')}",
                  "policy_sha256": str(evidence.policy.get("sha256")),
                  "model": str(candidate.get("spec")),
                  "model_root_digest": str(candidate.get("root_digest")),
                  "evidentiary": str(evidence.policy.get("meta", {}).get("evidentiary", True)),
                  "run_id": str(evidence.run.get("run_id"))}
    for name, value in properties.items():
        suite.add_property(name, one_line(value, 300))
    if evidence.verdict is None:
        case = TestCase(name="run", classname=f"certify.{policy_id}", time=0.0)
        case.result = [Error(message="the run did not complete; no check was decided",
                             type_="incomplete")]
        suite.add_testcase(case)
    else:
        times = _times(evidence.verdict.checks, evidence.cells)
        for check in evidence.verdict.checks:
            suite.add_testcase(_case(check, policy_id, times[check.id]))
    xml = JUnitXml()
    xml.add_testsuite(suite)
    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    return buf.getvalue()
