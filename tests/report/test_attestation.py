"""Signing and offline verification of a real signed demo run."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certify._io import canonical_json, sha256_file
from certify.attest import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, keygen
from certify.attest.keys import load_signer
from certify.attest.steps import pdf_attachment
from certify.attest.verify import verify_run
from certify.conductor import sign_run
from certify.errors import InputError
from tests.conftest import run_certify
from tests.report.conftest import SignedRun

STEPS = ["envelope", "signature", "payload type", "statement", "evidence.json", "report.pdf",
         "embedded evidence", "samples", "statement = evidence", "model", "policy",
         "validity window"]


def _envelope(run_dir: Path) -> dict:
    return json.loads((run_dir / "certify.intoto.jsonl").read_bytes())


def _statement(run_dir: Path) -> dict:
    return json.loads(base64.b64decode(_envelope(run_dir)["payload"]))


def _failed(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.name for s in result.steps if s.status == "fail"]


def test_demo_audit_writes_a_signed_run_that_verifies(signed_run: SignedRun) -> None:
    run = signed_run.run_dir
    for name in ("evidence.json", "report.pdf", "report.html", "junit.xml", "summary.md",
                 "certify.intoto.jsonl", "certify.pub"):
        assert (run / name).is_file(), name
    out = run_certify("verify", str(run), "--key", str(signed_run.public_key),
                      "--model", "builtin:tiny-chat-immunized", "--policy", "ci-smoke")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {cols[1].strip(): cols[2].strip() for line in out.stdout.splitlines()
            if len(cols := line.split("│")) > 3 and cols[1].strip()}
    assert {step: rows.get(step) for step in STEPS} == dict.fromkeys(STEPS, "PASS")
    assert "VERIFIED" in out.stdout


def test_statement_binds_model_evidence_report_and_verdict(signed_run: SignedRun) -> None:
    run = signed_run.run_dir
    evidence = json.loads((run / "evidence.json").read_bytes())
    stmt = _statement(run)
    assert stmt["_type"] == STATEMENT_TYPE and stmt["predicateType"] == PREDICATE_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    candidate = evidence["models"]["candidate"]
    assert subjects == {candidate["spec"]: candidate["root_digest"],
                        "evidence.json": sha256_file(run / "evidence.json"),
                        "report.pdf": sha256_file(run / "report.pdf")}
    pred = stmt["predicate"]
    assert pred["policy"]["digest"]["sha256"] == evidence["policy"]["sha256"]
    assert pred["verdict"]["overall"] == evidence["verdict"]["overall"]
    assert [(c["id"], c["verdict"]) for c in pred["verdict"]["checks"]] == \
        [(c["id"], c["verdict"]) for c in evidence["verdict"]["checks"]]
    assert pred["judges"][0]["validation"]["accuracy"] == \
        evidence["judges"][0]["validation"]["accuracy"]
    collected = datetime.strptime(evidence["run"]["collected"], "%Y-%m-%dT%H:%M:%SZ")
    until = datetime.strptime(pred["validity"]["until"], "%Y-%m-%dT%H:%M:%SZ")
    days = evidence["policy"]["effective"]["evidence"]["validity_days"]
    assert until - collected == timedelta(days=days)
    assert pred["retention"]["minDays"] == \
        evidence["policy"]["effective"]["evidence"]["retention"]["min_days"]
    assert pred["scope"] == evidence["scope"]


def test_signature_is_standard_dsse_over_pae(signed_run: SignedRun) -> None:
    """Checked with `cryptography` directly, from the DSSE spec, not through certify."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    env = _envelope(signed_run.run_dir)
    assert env["payloadType"] == PAYLOAD_TYPE
    payload = base64.b64decode(env["payload"])
    ptype = env["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    key = load_pem_public_key(signed_run.public_key.read_bytes())
    key.verify(base64.b64decode(env["signatures"][0]["sig"]), pae)  # raises if invalid


def test_wrong_key_exits_4(signed_run: SignedRun, tmp_path: Path) -> None:
    _, other = keygen(tmp_path / "other")
    out = run_certify("verify", str(signed_run.run_dir), "--key", str(other))
    assert out.returncode == 4
    assert "NOT VERIFIED" in out.stdout
    result = verify_run(signed_run.run_dir, other)
    assert _failed(result) == ["signature"]


def test_verify_without_a_pinned_key_fails(signed_run: SignedRun) -> None:
    result = verify_run(signed_run.run_dir)
    assert not result.ok and "signature" in _failed(result)
    # Without a trusted statement nothing is compared against it; every file check says so.
    assert {s.name for s in result.steps if s.status == "skip"} >= {"evidence.json",
                                                                   "report.pdf", "model"}


def test_verify_cli_rejects_unusable_arguments(signed_run: SignedRun, tmp_path: Path) -> None:
    assert run_certify("verify", str(tmp_path / "nope"), "--key",
                       str(signed_run.public_key)).returncode == 2
    out = run_certify("verify", str(signed_run.run_dir), "--key", str(signed_run.private_key))
    assert out.returncode == 2 and "private key" in out.stderr


def test_tampered_payload_type_and_statement_fail(run_copy: Path, signed_run: SignedRun) -> None:
    """Well-formed but altered envelopes: the signature no longer covers them."""
    original = (run_copy / "certify.intoto.jsonl").read_bytes()
    env = json.loads(original)
    for field, value in (("payloadType", "application/json"),
                         ("payload", base64.b64encode(_flip_verdict(env["payload"])).decode())):
        altered = dict(env, **{field: value})
        (run_copy / "certify.intoto.jsonl").write_bytes(canonical_json(altered) + b"\n")
        result = verify_run(run_copy, signed_run.public_key)
        assert _failed(result) == ["signature"], field


def _flip_verdict(payload_b64: str) -> bytes:
    stmt = json.loads(base64.b64decode(payload_b64))
    stmt["predicate"]["verdict"]["overall"] = "pass"
    return canonical_json(stmt)


def test_validity_window_is_enforced(signed_run: SignedRun) -> None:
    until = datetime.strptime(_statement(signed_run.run_dir)["predicate"]["validity"]["until"],
                              "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    late = verify_run(signed_run.run_dir, signed_run.public_key, now=until + timedelta(days=1))
    assert _failed(late) == ["validity window"]
    early = verify_run(signed_run.run_dir, signed_run.public_key,
                       now=until - timedelta(days=400))
    assert _failed(early) == ["validity window"]
    assert verify_run(signed_run.run_dir, signed_run.public_key,
                      now=until - timedelta(hours=1)).ok


def test_other_policy_file_fails(signed_run: SignedRun, tmp_path: Path) -> None:
    from certify.policy.load import resolve

    edited = tmp_path / "ci-smoke.yaml"
    edited.write_bytes(resolve("ci-smoke")[0].read_bytes() + b"# one more line\n")
    result = verify_run(signed_run.run_dir, signed_run.public_key, policy=str(edited))
    assert _failed(result) == ["policy"]


def test_modified_model_fails_and_names_the_file(signed_run: SignedRun, tmp_path: Path) -> None:
    from certify.demo.models import ensure_built

    model = tmp_path / "model"
    shutil.copytree(ensure_built("tiny-chat-immunized"), model)
    assert verify_run(signed_run.run_dir, signed_run.public_key, model=str(model)).ok
    config = model / "config.json"
    config.write_bytes(config.read_bytes().replace(b"}", b', "x": 1}', 1))
    result = verify_run(signed_run.run_dir, signed_run.public_key, model=str(model))
    assert _failed(result) == ["model"]
    assert "config.json" in next(s.detail for s in result.steps if s.name == "model")


def test_report_must_be_covered_by_the_signature(run_copy: Path, signed_run: SignedRun,
                                                 tmp_path: Path) -> None:
    """ECDSA P-256 signing of a run without a PDF; a PDF added afterwards is refused."""
    for name in ("report.pdf", "report.html"):
        (run_copy / name).unlink()
    _, pub = keygen(tmp_path / "ec", "ecdsa-p256")
    sign_run(run_copy, tmp_path / "ec" / "certify.key")
    result = verify_run(run_copy, pub)
    assert result.ok, result.steps
    assert {s.name: s.status for s in result.steps}["report.pdf"] == "skip"
    assert not (run_copy / "report.pdf").exists()  # signing re-rendered nothing absent
    shutil.copy(signed_run.run_dir / "report.pdf", run_copy / "report.pdf")
    assert _failed(verify_run(run_copy, pub)) == ["report.pdf"]


def test_keygen_writes_private_key_0600_and_never_overwrites(tmp_path: Path) -> None:
    out = run_certify("keygen", "--out", str(tmp_path / "k"), "--type", "ecdsa-p256")
    assert out.returncode == 0, out.stderr
    private = tmp_path / "k" / "certify.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k" / "certify.pub").stat().st_mode) == 0o644
    before = private.read_bytes()
    again = run_certify("keygen", "--out", str(tmp_path / "k"))
    assert again.returncode == 2 and private.read_bytes() == before


def test_signing_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    private, _ = keygen(tmp_path / "k")
    os.chmod(private, 0o644)
    with pytest.raises(InputError, match="readable by other users"):
        load_signer(private)


def test_malformed_evidence_fails_cleanly(run_copy: Path, signed_run: SignedRun) -> None:
    path = run_copy / "evidence.json"
    path.write_bytes(path.read_bytes().replace(b'"policy"', b'"polixy"', 1))
    result = verify_run(run_copy, signed_run.public_key)
    assert {"evidence.json", "statement = evidence"} <= set(_failed(result))


def test_signing_re_renders_a_report_of_other_evidence(run_copy: Path,
                                                      signed_run: SignedRun) -> None:
    """A report.pdf that embeds stale evidence is re-rendered before it is signed."""
    from certify.evidence import Evidence

    evidence = Evidence.read(run_copy / "evidence.json")
    evidence.limitations.append("Added after the report was rendered.")
    evidence.write(run_copy / "evidence.json")
    (run_copy / "report.html").unlink()
    sign_run(run_copy, signed_run.private_key)
    assert pdf_attachment(run_copy / "report.pdf", "evidence.json") == \
        (run_copy / "evidence.json").read_bytes()
    assert verify_run(run_copy, signed_run.public_key).ok


def test_resuming_with_fewer_formats_never_signs_a_stale_report(run_copy: Path,
                                                                signed_run: SignedRun) -> None:
    """`--resume --format junit --key K` on a run whose report.pdf an earlier attempt
    wrote: the evidence changes (the resume is recorded), so the old PDF is rendered
    again before it is signed, and the run verifies."""
    before = pdf_attachment(run_copy / "report.pdf", "evidence.json")
    done = run_certify("audit", "builtin:tiny-chat-immunized", "--reference",
                       "builtin:tiny-chat", "--policy", "ci-smoke", "--out",
                       str(run_copy), "--resume", "--format", "junit", "--key",
                       str(signed_run.private_key), "--quiet")
    assert done.returncode == signed_run.audit_returncode, done.stderr
    evidence = (run_copy / "evidence.json").read_bytes()
    assert evidence != before  # the resume is in the evidence
    assert pdf_attachment(run_copy / "report.pdf", "evidence.json") == evidence
    assert verify_run(run_copy, signed_run.public_key).ok
