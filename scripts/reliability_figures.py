"""Run the reliability tests and turn their own output into the figures of docs/reliability.md.

    python scripts/reliability_figures.py            # default (CI) budgets
    python scripts/reliability_figures.py --runslow  # with the long fuzzing and extra kills
    python scripts/reliability_figures.py --write    # also update docs/reliability.md

Figures come from two outputs of one pytest run, never from this script's own counting:
the JUnit XML properties the tests record (``faults_injected``/``faults_survived``,
``inputs_tried``/``inputs_handled``), and Hypothesis's statistics for the tamper
property tests (each passing example flipped one byte and saw verification fail).
A failed test is reported as failed; its figures are whatever it recorded first.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
MARKERS = {False: "default", True: "runslow"}  # one table per budget in the doc
TESTS = [
    "tests/test_fault_injection.py", "tests/test_fault_training.py",
    "tests/test_reliability_policies.py", "tests/test_bad_models.py", "tests/test_security.py",
    "tests/report/test_tamper_property.py", "tests/report/test_attestation.py",
    "tests/report/test_report_hostile.py", "tests/test_merge.py",
]
# Tamper scenarios written out by hand (each test applies one mutation and expects exit 4
# or a failed verification step); the property tests are counted by their examples.
NAMED_TAMPER = ("test_wrong_key_exits_4", "test_tampered_payload_type_and_statement_fail",
                "test_other_policy_file_fails", "test_modified_model_fails_and_names_the_file",
                "test_report_must_be_covered_by_the_signature", "test_flipped_byte_exits_4")
GROUPS = {  # test file -> heading in the figures table
    "test_fault_injection": "faults: SIGKILL at seeded points, then --resume",
    "test_fault_training": "faults: NaN/inf loss, out of memory, full disk",
    "test_reliability_policies": "inputs: malformed policies (corpus, extremes, fuzzing)",
    "test_bad_models": "inputs: bad models and datasets",
}


def run_pytest(extra: list[str], xml: Path, log: Path) -> int:
    present = [t for t in TESTS if (ROOT / t).is_file()]
    cmd = [sys.executable, "-m", "pytest", *present, "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "-o", "junit_family=xunit1", "--hypothesis-show-statistics",
           *extra]
    with open(log, "w") as out:
        return subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode


def junit_figures(xml: Path) -> tuple[dict[str, dict[str, float]], dict[str, int], list[str]]:
    """Summed properties per group, test outcomes, and the failed tests' names."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    outcomes = {"passed": 0, "failed": 0, "skipped": 0}
    failures: list[str] = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        if case.find("skipped") is not None:
            outcomes["skipped"] += 1
            continue
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes["failed" if failed else "passed"] += 1
        if failed:
            failures.append(f"{case.get('classname')}::{case.get('name')}")
        for prop in case.iter("property"):
            sums[module][prop.get("name", "")] += float(prop.get("value", "0"))
        if module in ("test_attestation", "test_tamper_property") and not failed and \
                case.get("name", "").startswith(NAMED_TAMPER):
            sums["tamper"]["tried"] += 1
            sums["tamper"]["detected"] += 1
    return sums, outcomes, failures


STAT_HEAD = re.compile(r"^(\S+\.py)::(\S+?)(?:\[.*\])?:$")
STAT_LINE = re.compile(r"- (\d+) passing(?: examples?)?, (\d+) failing")


def hypothesis_figures(log: Path) -> dict[str, tuple[int, int]]:
    """test -> (passing, failing) examples, summed over phases, from Hypothesis statistics."""
    out: dict[str, list[int]] = {}
    current = None
    for line in log.read_text().splitlines():
        head = STAT_HEAD.match(line.strip())
        if head:
            current = f"{head.group(1)}::{head.group(2)}"
            out.setdefault(current, [0, 0])
            continue
        found = STAT_LINE.search(line)
        if found and current:
            out[current][0] += int(found.group(1))
            out[current][1] += int(found.group(2))
    return {k: (v[0], v[1]) for k, v in out.items()}


def table(sums: dict[str, dict[str, float]], stats: dict[str, tuple[int, int]],
          outcomes: dict[str, int], args: list[str]) -> str:
    rows = ["| what | tried | survived / handled / detected |", "|---|---:|---:|"]

    def group(modules: tuple[str, str], tried_key: str, ok_key: str, verb: str,
              total_label: str) -> None:
        total = [0, 0]
        for module in modules:
            s = sums.get(module, {})
            tried, ok = int(s.get(tried_key, 0)), int(s.get(ok_key, 0))
            total = [total[0] + tried, total[1] + ok]
            rows.append(f"| {GROUPS[module]} | {tried} | {ok} {verb} |")
        rows.append(f"| **{total_label}** | **{total[0]}** | **{total[1]}** |")

    group(("test_fault_injection", "test_fault_training"), "faults_injected",
          "faults_survived", "survived", "faults injected / survived")
    group(("test_reliability_policies", "test_bad_models"), "inputs_tried", "inputs_handled",
          "handled", "malformed inputs tried / handled")
    tamper = {k: v for k, v in stats.items() if "test_tamper_property" in k}
    t_tried = sum(p + f for p, f in tamper.values()) + int(sums["tamper"].get("tried", 0))
    t_ok = sum(p for p, _ in tamper.values()) + int(sums["tamper"].get("detected", 0))
    for name, (p, f) in sorted(tamper.items()):
        rows.append(f"| tamper: `{name.split('::')[1]}` (Hypothesis examples) | {p + f} | "
                    f"{p} detected |")
    rows.append(f"| tamper: named scenarios (wrong key, payload type, policy, model, report) | "
                f"{int(sums['tamper'].get('tried', 0))} | "
                f"{int(sums['tamper'].get('detected', 0))} detected |")
    rows.append(f"| **tamper mutations tried / detected** | **{t_tried}** | **{t_ok}** |")
    cmd = " ".join(["python scripts/reliability_figures.py", *args])
    return "\n".join([f"Produced by `{cmd}`: {outcomes['passed']} tests passed, "
                      f"{outcomes['failed']} failed, {outcomes['skipped']} skipped.", "",
                      *rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runslow", action="store_true", help="include the slow budgets")
    parser.add_argument("--write", action="store_true", help="update docs/reliability.md")
    opts = parser.parse_args()
    extra = ["--runslow"] if opts.runslow else []
    with tempfile.TemporaryDirectory() as tmp:
        xml, log = Path(tmp) / "junit.xml", Path(tmp) / "pytest.log"
        code = run_pytest(extra, xml, log)
        if not xml.exists():
            sys.stderr.write(log.read_text()[-4000:])
            return 2
        sums, outcomes, failures = junit_figures(xml)
        text = table(sums, hypothesis_figures(log), outcomes, extra)
        if failures:
            text += "\n\nFailed: " + ", ".join(f"`{f}`" for f in failures)
            sys.stderr.write(log.read_text()[-6000:])
    print(text)
    if opts.write:
        name = MARKERS[opts.runslow]
        start, end = f"<!-- figures:{name}:start -->", f"<!-- figures:{name}:end -->"
        doc = DOC.read_text()
        head, rest = doc.split(start, 1)
        DOC.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
