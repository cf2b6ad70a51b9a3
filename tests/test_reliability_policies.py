"""Malformed policies: every one is refused with exit 2, naming the field and the line.

The corpus in tests/policies/bad/ states in each file what the message must say (see
its README). Fuzzing then throws random bytes, random edits of a valid policy's text,
and random structural mutations of its fields at the loader: anything but a
PolicyError or UsageError (a traceback, a hang caught by the test runner) fails.
The figures recorded here (``record_property``) feed docs/reliability.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certify.errors import PolicyError, UsageError
from certify.policy import load_policy
from tests.conftest import ROOT, run_certify

BAD = ROOT / "tests" / "policies" / "bad"
CORPUS = sorted(BAD.glob("*.yaml"))
VALID_TEXT = (ROOT / "policies" / "ci-smoke.yaml").read_text(encoding="utf-8")
SHORT_FUZZ, LONG_FUZZ = 150, 4000


def _expectations(path: Path) -> tuple[list[str], int | None]:
    """(texts the message must contain, line it must name) from the file's markers."""
    lines = path.read_bytes().split(b"\n")
    texts = [ln[len(b"# expect: "):].decode() for ln in lines if ln.startswith(b"# expect: ")]
    for marker in (b"# <- reported", b"# <- defect"):
        marked = [i + 1 for i, ln in enumerate(lines) if marker in ln]
        if marked:
            return texts, marked[0]
    explicit = [ln for ln in lines if ln.startswith(b"# expect-line: ")]
    return texts, int(explicit[0].split()[2]) if explicit else None


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30
    for path in CORPUS:
        texts, _ = _expectations(path)
        assert texts, f"{path.name} states nothing its error must say"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_policy_is_refused_naming_field_and_line(path: Path, record_property: Any) -> None:
    record_property("inputs_tried", 1)
    texts, line = _expectations(path)
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    message = str(info.value)
    for text in texts:
        assert text in message, f"{path.name}: {text!r} not in:\n{message}"
    if line is not None:
        assert f"{path}:{line}:" in message, f"{path.name}: line {line} not named in:\n{message}"
    assert "hint:" in message
    record_property("inputs_handled", 1)


# One interpreter runs `certify audit` on every bad policy, as a CI job would, and
# reports the exit code and stderr of each (and whether torch was ever imported).
AUDIT_PROBE = """
import contextlib, io, json, sys
from certify.cli import main
out, results = sys.argv[1], {}
for i, path in enumerate(sys.argv[2:]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(["audit", "builtin:tiny-chat", "--policy", path, "--out", f"{out}/{i}"])
            code = 0
        except SystemExit as e:
            code = e.code
    results[path] = [code, err.getvalue()]
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def test_cli_audit_refuses_every_bad_policy_with_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", AUDIT_PROBE, str(tmp_path),
                           *map(str, CORPUS)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    for path in CORPUS:
        code, err = report["results"][str(path)]
        _, line = _expectations(path)
        assert code == 2, f"{path.name}: exit {code}\n{err}"
        assert err.startswith("error: policy ") and "Traceback" not in err, err
        assert line is None or f"{path}:{line}:" in err, err
    assert not report["torch"], "a policy error must stop the audit before any model work"
    assert not list(tmp_path.iterdir()), "no run directory may be created for a bad policy"


def test_policy_validate_reports_every_bad_file() -> None:
    result = run_certify("policy", "validate", *map(str, CORPUS))
    assert result.returncode == 2
    assert result.stderr.count("FAIL  ") == len(CORPUS)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name,data,needle", [
    ("too-large", b"# " + b"x" * (1 << 20) + b"\n", "limited to"),
    ("deep-nesting", b"id: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nesting is too deep"),
    ("deep-mapping", b"a:\n" + b"".join(b" " * i + b"b:\n" for i in range(1, 1200)),
     "nesting is too deep"),
])
def test_extreme_inputs_are_refused(tmp_path: Path, name: str, data: bytes, needle: str,
                                    record_property: Any) -> None:
    record_property("inputs_tried", 1)
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    assert needle in str(info.value)
    record_property("inputs_handled", 1)


# --------------------------------------------------------------------------- fuzzing

TOKENS = [":", ": ", "-", "- ", "[", "]", "{", "}", "&a", "*a", "!!python/object:os.system",
          "\t", "\n", "  ", "'", '"', "#", "---", "...", "?", "|", ">", "<<: *a", "~", "null",
          ".nan", ".inf", "-1", "0", "1e308", "true", "\\ud800", "\x00", "\x85", "é", "🙂",
          "extends: ci-smoke", "attacks: []", "max_steps: [1, 2]"]


def _mutate_text(text: str, edits: list[tuple[int, int, str]]) -> str:
    for pos, cut, insert in edits:
        at = pos % (len(text) + 1)
        text = text[:at] + insert + text[at + cut:]
    return text


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _set(root: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = root
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return root


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8)


@st.composite
def mutated_policy(draw: st.DrawFn) -> str:
    """ci-smoke with 1-4 random structural edits, dumped back to YAML."""
    doc = yaml.safe_load(VALID_TEXT)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = paths[draw(st.integers(0, len(paths) - 1))]
        action = draw(st.sampled_from(["replace", "delete", "add", "empty"]))
        if action == "delete" and path:
            doc = _set(doc, path, None, delete=True)
        elif action == "add" and path and isinstance(_get(doc, path), dict):
            key = draw(st.sampled_from(["extra", "max_rate", "budget", "id", "attack", "eval"]))
            _get(doc, path)[key] = draw(VALUES)
        elif action == "empty":
            doc = _set(doc, path, draw(st.sampled_from([[], {}, "", None, 0])))
        else:
            doc = _set(doc, path, draw(VALUES))
    return yaml.safe_dump(doc, allow_unicode=True)


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


class Tally:
    """Counts what the fuzzer tried and how each input ended."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.tried, self.refused, self.accepted = directory, 0, 0, 0

    def check(self, data: bytes) -> None:
        self.tried += 1
        path = self.directory / "fuzzed.yaml"
        path.write_bytes(data)
        try:
            load_policy(str(path))
        except (PolicyError, UsageError) as e:
            assert e.message and e.exit_code == 2
            self.refused += 1
        else:
            self.accepted += 1

    def record(self, record_property: Any) -> None:
        assert self.tried > 0
        record_property("inputs_tried", self.tried)
        record_property("inputs_handled", self.refused + self.accepted)
        record_property("inputs_refused", self.refused)
        record_property("inputs_accepted", self.accepted)


STRATEGIES: dict[str, Callable[[], st.SearchStrategy[bytes]]] = {
    "bytes": lambda: st.binary(max_size=4000),
    "text-edits": lambda: st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 8),
                  st.sampled_from(TOKENS) | st.text(max_size=6)), min_size=1, max_size=6,
    ).map(lambda edits: _mutate_text(VALID_TEXT, edits).encode("utf-8", "surrogatepass")),
    "structure": lambda: mutated_policy().map(lambda t: t.encode("utf-8", "surrogatepass")),
}


def _fuzz(kind: str, examples: int, record_property: Any, derandomize: bool) -> Tally:
    with tempfile.TemporaryDirectory() as tmp:
        tally = Tally(Path(tmp))

        @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                  suppress_health_check=list(HealthCheck))
        @given(STRATEGIES[kind]())
        def check(data: bytes) -> None:
            tally.check(data)

        check()
        tally.record(record_property)
    return tally


def _assert_fuzzed(kind: str, tally: Tally) -> None:
    # Every input ended in a clean refusal or a valid policy (a traceback fails inside).
    assert tally.tried > 0 and tally.refused + tally.accepted == tally.tried
    # Each strategy must reach past the YAML parser, or it fuzzes nothing interesting.
    if kind != "bytes":
        assert tally.refused > 0


@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_fuzz_policy_loader_short(kind: str, record_property: Any) -> None:
    tally = _fuzz(kind, SHORT_FUZZ, record_property, derandomize=True)
    _assert_fuzzed(kind, tally)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_fuzz_policy_loader_long(kind: str, record_property: Any) -> None:
    tally = _fuzz(kind, LONG_FUZZ, record_property, derandomize=False)
    _assert_fuzzed(kind, tally)
