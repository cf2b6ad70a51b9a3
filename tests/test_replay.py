"""`certify replay`: an auditor re-runs cells of a signed audit and compares its numbers.

A signed audit of the demo model under the fault-injection policy (three small cells) is
replayed honestly (agrees, exit 0, a signed replay statement), then forged: one cell's
judged count is changed, the evidence re-signed with the same key. `verify` passes the
forgery (the signature is valid); `replay` of that cell must exit 4 and name the step.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from certify.assess.agreement import compare_cell
from certify.conductor.replay import choose
from certify.evidence import Evidence
from certify.policy.schema import Reproducibility

POLICY = "tests/policies/fault-tiny.yaml"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, tiny_chat: Path):
    from tests.conftest import run_certify as certify_cli

    root = tmp_path_factory.mktemp("replay")
    assert certify_cli("keygen", "--out", str(root / "keys")).returncode == 0
    run_dir = root / "run"
    done = certify_cli("audit", "builtin:tiny-chat", "--policy", POLICY, "--out", str(run_dir),
                       "--key", str(root / "keys" / "certify.key"), "--format", "md", "--quiet")
    assert done.returncode in (0, 1), done.stderr
    return run_dir, root / "keys" / "certify.key", root / "keys" / "certify.pub"


def _cell(run_dir: Path, attack: str) -> str:
    return next(c.id for c in Evidence.read(run_dir / "evidence.json").cells
                if c.attack_id == attack)


def test_an_honest_run_replays_and_the_statement_names_it(signed, certify_cli, tmp_path):
    run_dir, private, public = signed
    statement = tmp_path / "replay.intoto.jsonl"
    done = certify_cli("replay", str(run_dir), "--key", str(public), "--k", "3", "--json",
                       "--sign", str(private), "--statement", str(statement))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["agrees"] and result["verified_signature"]
    evidence = Evidence.read(run_dir / "evidence.json")
    assert sorted(c["cell"] for c in result["cells"]) == sorted(c.id for c in evidence.cells)
    compared = sum(len(c["rows"]) for c in result["cells"])
    assert compared >= 2 * len(evidence.cells)  # counts and losses at every checkpoint

    envelope = json.loads(statement.read_text())
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["predicateType"] == "https://certify.dev/attestation/replay/v1"
    digests = {s["name"]: s["digest"]["sha256"] for s in payload["subject"]}
    assert digests["evidence.json"] == hashlib.sha256(
        (run_dir / "evidence.json").read_bytes()).hexdigest()
    assert digests["certify.intoto.jsonl"] == hashlib.sha256(
        (run_dir / "certify.intoto.jsonl").read_bytes()).hexdigest()
    assert payload["predicate"]["agrees"] is True

    from certify.attest import keys
    from certify.attest.envelope import parse_envelope
    from certify.attest.verify import check_signature

    ok, detail = check_signature(parse_envelope(statement.read_bytes()),
                                 keys.load_public_key(public))
    assert ok, detail


def test_a_forged_resigned_run_verifies_but_replay_names_the_step(signed, certify_cli,
                                                                  tmp_path):
    run_dir, private, public = signed
    forged = tmp_path / "forged"
    shutil.copytree(run_dir, forged)
    data = json.loads((forged / "evidence.json").read_text())
    cell = next(c for c in data["cells"] if c["attack_id"] == "sft")
    checkpoint = cell["checkpoints"][0]
    harmful = checkpoint["evals"]["harm"]["metrics"]["harmful"]
    n = harmful["n"]
    harmful["k"] = n - harmful["k"]  # the opposite of what was measured: far past tolerance
    harmful["value"] = harmful["k"] / n
    (forged / "evidence.json").write_text(json.dumps(data, indent=2) + "\n")
    assert certify_cli("render", str(forged), "--format", "md").returncode == 0
    resigned = certify_cli("sign", str(forged), "--key", str(private))
    assert resigned.returncode == 0, resigned.stderr
    verified = certify_cli("verify", str(forged), "--key", str(public))
    assert verified.returncode == 0, verified.stdout  # the signature is valid: verify cannot tell

    done = certify_cli("replay", str(forged), "--key", str(public), "--cell", cell["id"])
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"DISAGREES at step {checkpoint['step']}" in done.stdout
    assert "harm/harmful" in done.stdout
    as_json = certify_cli("replay", str(forged), "--key", str(public), "--cell", cell["id"],
                          "--json")
    assert as_json.returncode == 4
    first = next(r for r in json.loads(as_json.stdout)["cells"][0]["rows"] if not r["agrees"])
    assert first["step"] == checkpoint["step"] and first["signed"] == harmful["k"]


def test_the_draw_is_seeded_by_the_attestation(signed):
    run_dir, _, _ = signed
    evidence = Evidence.read(run_dir / "evidence.json")
    first, again = choose(run_dir, evidence, (), 2), choose(run_dir, evidence, (), 2)
    assert first == again and len(first.cells) == 2
    assert set(first.cells) <= {c.id for c in evidence.cells}
    digest = hashlib.sha256((run_dir / "certify.intoto.jsonl").read_bytes()).hexdigest()
    assert "certify.intoto.jsonl" in first.how and digest[:16] in first.how
    # Every cell is drawn by some attestation: the prover cannot exclude one in advance.
    drawn = set()
    for i in range(40):
        other = copy.deepcopy(evidence)
        fake = run_dir.parent / f"draw-{i}"
        fake.mkdir(exist_ok=True)
        (fake / "certify.intoto.jsonl").write_text(f"envelope {i}\n")
        drawn |= set(choose(fake, other, (), 1).cells)
    assert drawn == {c.id for c in evidence.cells if c.status == "ok"}


def test_replay_reads_the_evidence_that_verified_once(signed, tmp_path):
    from certify.attest import verify_run

    run_dir, _, public = signed
    result = verify_run(run_dir, public)
    assert result.ok and result.evidence == (run_dir / "evidence.json").read_bytes()
    # Without an envelope the draw is seeded by the evidence bytes already read: the
    # directory has neither file, so nothing was read again.
    evidence = Evidence.read(run_dir / "evidence.json")
    choice = choose(tmp_path, evidence, (), 1, result.evidence)
    assert hashlib.sha256(result.evidence).hexdigest()[:16] in choice.how
    assert "evidence.json" in choice.how


def test_agreement_is_within_the_declared_tolerance(signed):
    run_dir, _, _ = signed
    cell = Evidence.read(run_dir / "evidence.json").cell(_cell(run_dir, "sft"))
    tolerance = Reproducibility(judged_share=0.0, judged_min=2, loss_rel=0.01)
    assert compare_cell(cell, cell, tolerance, []).agrees

    def moved(by: int, loss: float = 1.0):
        other = cell.model_copy(deep=True)
        metric = other.checkpoints[-1].evals["harm"].metrics["harmful"]
        metric.k = metric.k + by if metric.k + by <= metric.n else metric.k - by
        if other.checkpoints[-1].loss is not None:
            other.checkpoints[-1].loss *= loss
        return compare_cell(cell, other, tolerance, [])

    assert moved(2).agrees and not moved(3).agrees
    assert moved(3).first_disagreement.step == cell.checkpoints[-1].step
    assert moved(0, 1.005).agrees and not moved(0, 1.05).agrees
    short = cell.model_copy(deep=True)
    short.checkpoints = short.checkpoints[:-1]
    assert compare_cell(cell, short, tolerance, []).problem is not None


def test_replay_refuses_what_it_cannot_run(signed, certify_cli, tmp_path):
    run_dir, _, _ = signed
    bad_cell = certify_cli("replay", str(run_dir), "--cell", "can-nope-000")
    assert bad_cell.returncode == 2 and "can-nope-000" in bad_cell.stderr
    assert _cell(run_dir, "sft") in bad_cell.stderr  # it lists the cells there are

    other = tmp_path / "not-the-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    missing = certify_cli("replay", str(run_dir), "--cell", _cell(run_dir, "sft"),
                          "--model", str(other))
    assert missing.returncode == 3, missing.stderr
    assert "--model" in missing.stderr

    wrong_key = tmp_path / "other-keys"
    assert certify_cli("keygen", "--out", str(wrong_key)).returncode == 0
    refused = certify_cli("replay", str(run_dir), "--key", str(wrong_key / "certify.pub"))
    assert refused.returncode == 4 and "does not verify" in refused.stderr


def test_a_verdict_within_the_tolerance_of_its_threshold_is_a_limitation(signed):
    """The run's strong-resistance check passes 0/12 harmful against max_rate 50%. Moving
    every count by 2 keeps the upper bound under 50% (2/12: 48%); by 3 it crosses (3/12:
    53%), so with that tolerance the check is fragile and the limitation names it."""
    from certify.assess import assess, fragile_limitations
    from certify.conductor.collect import policy_of

    run_dir, _, _ = signed
    evidence = Evidence.read(run_dir / "evidence.json")
    policy = policy_of(evidence)
    check = next(r for r in evidence.verdict.checks if r.id == "strong-resistance")
    worst = max(cp.evals["harm"].metrics["harmful"].k for c in evidence.cells
                for cp in c.checkpoints if "harm" in cp.evals)
    assert check.verdict == "pass" and worst == 0 and not check.fragile

    def with_tolerance(items: int):
        repro = Reproducibility(judged_share=0.0, judged_min=items)
        stats = policy.statistics.model_copy(update={"reproducibility": repro})
        return policy.model_copy(update={"statistics": stats})

    loose = with_tolerance(3)
    verdict = assess(evidence, loose)
    fragile = next(r for r in verdict.checks if r.id == "strong-resistance")
    assert fragile.verdict == "pass" and fragile.fragile  # the verdict itself is unchanged
    assert any("strong-resistance" in x for x in fragile_limitations(verdict, loose))
    tight = assess(evidence, with_tolerance(2))
    assert not next(r for r in tight.checks if r.id == "strong-resistance").fragile
    assert fragile_limitations(tight, with_tolerance(2)) == []


def test_the_evidence_and_report_record_what_decides_the_arithmetic(signed):
    from certify.conductor.collect import policy_of
    from certify.report.methodology import environment, methodology

    run_dir, _, _ = signed
    evidence = Evidence.read(run_dir / "evidence.json")
    for cell in evidence.cells:
        n = cell.numerics
        assert n["threads"] >= 1 and n["torch"] and n["cpu"] and n["blas"]
        assert n["dtype"] == "float32" and n["device"] == "cpu"
        assert isinstance(n["deterministic"], bool) and isinstance(n["cpu_flags"], list)
    assert evidence.environment["numerics"] == evidence.cells[0].numerics  # one setting
    rows = dict(environment(evidence)[0])
    assert f"{evidence.cells[0].numerics['threads']} thread(s)" in rows["numerics"]
    stats = dict(methodology(evidence, policy_of(evidence)).statistics)
    assert "max(2, 15% of n)" in stats["reproducibility tolerance"]


def test_a_disagreement_names_the_numerics_that_differ(signed):
    run_dir, _, _ = signed
    cell = Evidence.read(run_dir / "evidence.json").cell(_cell(run_dir, "sft"))
    other = cell.model_copy(deep=True)
    other.numerics = {**cell.numerics, "env": {"MKL_CBWR": "COMPATIBLE"}}
    metric = other.checkpoints[-1].evals["harm"].metrics["harmful"]
    metric.k = metric.n - (metric.k or 0)
    agreement = compare_cell(cell, other, Reproducibility(), [])
    assert not agreement.agrees
    assert agreement.numerics_differ == (
        f"env: {cell.numerics.get('env')} when signed, {{'MKL_CBWR': 'COMPATIBLE'}} here",)
    assert compare_cell(cell, cell, Reproducibility(), []).numerics_differ == ()
