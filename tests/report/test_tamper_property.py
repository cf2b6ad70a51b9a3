"""Property: flipping any byte of any signed subject, of the envelope (payload, payload
type, keyid, signature or anywhere else) makes verification fail; so does a wrong key.

Mirrors model-transparency's sign → mutate → verify fuzzers. Each example flips one
byte in place in a private copy of a real signed run and restores it afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certify.attest.verify import verify_run
from tests.conftest import run_certify
from tests.report.conftest import SignedRun

ENVELOPE = "certify.intoto.jsonl"


@pytest.fixture(scope="module")
def tamper_run(signed_run: SignedRun,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from certify.demo.models import ensure_built

    root = tmp_path_factory.mktemp("tamper")
    shutil.copytree(signed_run.run_dir, root / "run", ignore=shutil.ignore_patterns(".lock"))
    shutil.copytree(ensure_built("tiny-chat-immunized"), root / "model")
    assert verify_run(root / "run", signed_run.public_key, model=str(root / "model")).ok
    return root / "run", root / "model"


def _targets(run: Path, model: Path) -> list[Path]:
    files = [run / "evidence.json", run / "report.pdf", run / ENVELOPE]
    files += sorted((run / "samples").glob("*.jsonl"))
    files += sorted(p for p in model.iterdir() if p.is_file())
    return files


def _region(data: bytes, field: str) -> tuple[int, int]:
    """Byte range of one field's value inside the canonical envelope line."""
    doc = json.loads(data)
    value = doc[field] if field in ("payload", "payloadType") else doc["signatures"][0][field]
    start = data.index(json.dumps(value).encode())
    return start + 1, start + 1 + len(value)


def _flip(path: Path, position: int, mask: int) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[position % len(data)] ^= mask
    path.write_bytes(bytes(data))
    return original


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(min_value=0), position=st.integers(min_value=0),
       mask=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_of_any_subject_fails(tamper_run: tuple[Path, Path],
                                               signed_run: SignedRun, which: int, position: int,
                                               mask: int) -> None:
    run, model = tamper_run
    targets = _targets(run, model)
    path = targets[which % len(targets)]
    original = _flip(path, position, mask)
    try:
        result = verify_run(run, signed_run.public_key, model=str(model))
    finally:
        path.write_bytes(original)
    assert not result.ok, f"flipping byte {position % len(original)} of {path.name} passed"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(["payloadType", "payload", "sig", "keyid"]),
       offset=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_of_the_envelope_fields_fails(tamper_run: tuple[Path, Path],
                                                       signed_run: SignedRun, field: str,
                                                       offset: int, mask: int) -> None:
    run, _ = tamper_run
    path = run / ENVELOPE
    start, end = _region(path.read_bytes(), field)
    original = _flip(path, start + offset % (end - start), mask)
    try:
        result = verify_run(run, signed_run.public_key)
    finally:
        path.write_bytes(original)
    assert not result.ok, f"flipping a byte of {field} passed"
    assert any(s.status == "fail" and s.name in ("envelope", "signature") for s in result.steps)


def test_flipped_byte_exits_4_through_the_cli(tamper_run: tuple[Path, Path],
                                              signed_run: SignedRun) -> None:
    run, _ = tamper_run
    original = _flip(run / "evidence.json", 100, 0x01)
    try:
        out = run_certify("verify", str(run), "--key", str(signed_run.public_key))
    finally:
        (run / "evidence.json").write_bytes(original)
    assert out.returncode == 4, out.stdout
    assert "the evidence was modified" in " ".join(out.stdout.replace("│", " ").split())
