"""Bad input gets a one-paragraph error naming the problem and the fix, and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from certify.errors import PolicyError
from certify.policy import load_policy
from tests.conftest import ROOT, run_certify

SMOKE = (ROOT / "policies" / "ci-smoke.yaml").read_text()


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_attack_names_the_nearest_one(tmp_path: Path) -> None:
    path = _write(tmp_path, SMOKE.replace("attack: lora", "attack: lorra"))
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    msg = str(info.value)
    assert "lorra" in msg and "did you mean 'lora'" in msg
    line = SMOKE.splitlines().index("    attack: lora") + 1
    assert f"p.yaml:{line}:" in msg


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (SMOKE.replace("max_rate: 0.50", "max_rat: 0.50", 1)
            .replace("learning_rate: 1.0e-3", "learning_rate: -1")
            .replace("eval: harm\n    max_rate", "eval: harmm\n    max_rate"))
    with pytest.raises(PolicyError) as info:
        load_policy(str(_write(tmp_path, text)))
    problems = info.value.problems
    assert len(problems) >= 3, problems
    joined = "\n".join(problems)
    assert "max_rat" in joined and "did you mean 'max_rate'" in joined
    assert "learning_rate" in joined and "greater than 0" in joined
    assert "harmm" in joined


@pytest.mark.parametrize("text,needle", [
    ("id: x\ntitle: t\nattacks: []\n", "attacks"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("id: a\nid: b\n", "duplicate key 'id'"),
    ("id: [unclosed\n", "invalid YAML"),
    ("", "empty"),
])
def test_malformed_policies(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(str(_write(tmp_path, text)))
    assert needle in str(info.value)


def test_non_utf8_policy_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"id: ok\ntitle: caf\xe9\n")
    with pytest.raises(PolicyError) as info:
        load_policy(str(path))
    assert "bad.yaml:2" in str(info.value) and "UTF-8" in str(info.value)


def test_cli_policy_error_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, SMOKE.replace("attack: sft", "attack: fulltune"))
    for args in (["policy", "validate", str(path)],
                 ["audit", "builtin:tiny-chat", "--policy", str(path), "--out", str(tmp_path)]):
        result = run_certify(*args)
        assert result.returncode == 2, result.stderr
        assert "fulltune" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run.json").exists()  # nothing was run


def test_missing_model_path_exits_2(tmp_path: Path) -> None:
    result = run_certify("audit", str(tmp_path / "no-such-model"), "--policy", "ci-smoke",
                         "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "not found" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_shipped_policy_suggests_names() -> None:
    result = run_certify("policy", "validate", "ci-smok")
    assert result.returncode == 2
    assert "did you mean 'ci-smoke'" in result.stderr


def test_run_dir_of_another_policy_exits_2(tmp_path: Path, tiny_chat: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(
        '{"format": "certify.run/v1", "run_id": "x", "policy": {"id": "sb1047", "files": []},'
        ' "models": {"candidate": {"spec": "builtin:tiny-chat"}}, "versions": {}, "plan": [],'
        ' "resumes": []}')
    result = run_certify("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "different audit" in result.stderr and "sb1047" in result.stderr
    assert "--out" in result.stderr


def test_missing_judge_model_exits_2_before_anything_is_built(tmp_path: Path) -> None:
    """A judge model absent from the HF cache is named, with the command that fetches it,
    before any model is built or any cell trains (issue 15, auditing one's own model)."""
    import json

    overlay = tmp_path / "judge.yaml"
    overlay.write_text("evaluations:\n  harm:\n    params:\n      ensemble: any\n"
                       "      judges:\n        - {judge: classifier, params: "
                       "{model: acme/no-such-judge}}\n")
    cache, out = tmp_path / "cache", tmp_path / "run"
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "CERTIFY_CACHE_DIR": str(cache)}
    args = ("audit", "builtin:tiny-chat", "--policy", "ci-smoke", "--overlay", str(overlay),
            "--out", str(out))
    result = run_certify(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert "judge 'classifier' of evaluation 'harm'" in result.stderr
    assert "hf download acme/no-such-judge" in result.stderr
    assert not out.exists() and not (cache / "models").exists()
    error = json.loads(run_certify(*args, "--json", env=env).stdout)["error"]
    assert error["kind"] == "ModelError" and error["exit_code"] == 2
