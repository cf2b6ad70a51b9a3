"""junit.xml: one test case per policy check, for CI test-report widgets.

A failed or inconclusive required check is a failure (both fail the gate), an
errored check is an error, and an optional check that did not pass is skipped with
its verdict. The failure message carries the observed value against the threshold.
"""

from __future__ import annotations

import io

from certify.evidence import Evidence
from certify.report.check_text import observed_text, threshold_text
from certify.report.text import one_line


def _case(check, policy_id: str):  # type: ignore[no-untyped-def]
    from junitparser import Error, Failure, Skipped, TestCase

    case = TestCase(name=check.id, classname=f"certify.{policy_id}.{check.condition}", time=0.0)
    message = one_line(f"{check.verdict.upper()}: observed {observed_text(check)} vs threshold "
                       f"{threshold_text(check)}", 600)
    if check.verdict == "pass":
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
        for check in evidence.verdict.checks:
            suite.add_testcase(_case(check, policy_id))
    xml = JUnitXml()
    xml.add_testsuite(suite)
    buf = io.BytesIO()
    xml.write(buf, pretty=True)
    return buf.getvalue()
