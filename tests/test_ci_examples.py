"""The CI examples (docs/github-actions.md, docs/gitlab-ci.md) are valid YAML, run only
certify commands and options the CLI has, keep the run directory when the gate fails,
and merge every shard (issue 15, 'CI')."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from certify.cli import cli
from certify.report import FORMATS
from tests.conftest import ROOT

DOCS = {"github": ROOT / "docs" / "github-actions.md", "gitlab": ROOT / "docs" / "gitlab-ci.md"}


def pipelines(doc: Path) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, f"{doc} has no yaml block"
    return [yaml.safe_load(block) for block in blocks]


def shell_lines(node: Any) -> list[str]:
    """Every shell line of a workflow: GitHub ``run:`` steps, GitLab ``script`` lists."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                out += value.replace("\\\n", " ").splitlines()
            elif key in ("script", "before_script", "after_script") and isinstance(value, list):
                out += [str(v) for v in value]
            else:
                out += shell_lines(value)
    elif isinstance(node, list):
        for item in node:
            out += shell_lines(item)
    return out


def certify_commands(lines: list[str]) -> list[list[str]]:
    """The argument lists of every ``certify ...`` invocation (CI expressions such as
    ``${{ matrix.shard }}`` read as one word)."""
    commands = []
    for line in lines:
        line = re.sub(r"\$\{\{[^}]*\}\}", "X", line)
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            while words and words[0] in ("then", "else", "do", "!"):
                words = words[1:]
            if words and words[0] == "certify":
                commands.append(words[1:])
    return commands


def check_command(args: list[str]) -> None:
    command: click.Command = cli
    while isinstance(command, click.Group):
        name = args.pop(0)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"certify has no command {name!r}"
        command = found
    options = {opt for p in command.params for opt in p.opts + p.secondary_opts}
    used = [a.split("=")[0] for a in args if a.startswith("-")]
    unknown = [a for a in used if a not in options]
    assert not unknown, f"certify {command.name} has no option {unknown}"


def _jobs(doc: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job name, job, its pipeline) for every job of every example in ``doc``."""
    out = []
    for pipeline in pipelines(DOCS[doc]):
        jobs = pipeline["jobs"] if doc == "github" else {
            k: v for k, v in pipeline.items() if isinstance(v, dict) and "script" in v}
        out += [(name, job, pipeline) for name, job in jobs.items()]
    return out


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_certify_command_and_option_exists(doc: str) -> None:
    commands = certify_commands(shell_lines(pipelines(DOCS[doc])))
    names = {c[0] for c in commands}
    assert {"audit", "verify", "merge", "sign"} <= names, names
    for args in commands:
        check_command(list(args))


def test_github_keeps_the_run_when_the_gate_fails() -> None:
    for name, job, _ in _jobs("github"):
        steps = job["steps"]
        uses = [s.get("uses", "") for s in steps]
        assert not any(u.startswith("actions/cache@") for u in uses), \
            f"{name}: actions/cache saves only when the job succeeds"
        saves = [s for s in steps if s.get("uses", "").startswith("actions/cache/save@")]
        uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
        for step in saves + uploads:
            if steps.index(step) > 0 and any("certify audit" in s.get("run", "")
                                             for s in steps[:steps.index(step)]):
                assert step.get("if") == "always()", (name, step)
        audits = [s for s in steps if "certify audit" in s.get("run", "")
                  and "--dry-run" not in s["run"]]
        for step in audits:  # the audit step itself never fails the job before the saves
            run = step["run"]
            assert "set +e" in run and ("exit 0" in run or "-eq 3" in run), (name, run)
        if saves:
            restore = next(s for s in steps
                           if s.get("uses", "").startswith("actions/cache/restore@"))
            assert restore["with"]["path"] == saves[0]["with"]["path"]
            assert "run_attempt" in saves[0]["with"]["key"]  # an entry is never overwritten
            assert saves[0]["with"]["key"].startswith(restore["with"]["restore-keys"])
    gate = next(job for name, job, _ in _jobs("github") if name == "audit")["steps"][-1]
    assert gate["name"] == "Gate" and "if" not in gate


def test_gitlab_keeps_the_run_and_reports_junit() -> None:
    junit = FORMATS["junit"]
    reported = 0
    for name, job, _ in _jobs("gitlab"):
        script = " ".join(job["script"])
        if "certify audit" in script or "certify merge" in script:
            assert job["artifacts"]["when"] == "always", name
            if "cache" in job:
                assert job["cache"]["when"] == "always", name
            report = job["artifacts"].get("reports", {}).get("junit")
            if report:
                assert report.endswith("/" + junit)
                reported += 1
        assert "when" not in job or "rules" not in job, f"{name}: GitLab refuses when with rules"
    assert reported >= 2


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_the_merge_names_every_shard(doc: str) -> None:
    for pipeline in pipelines(DOCS[doc]):
        commands = certify_commands(shell_lines(pipeline))
        merges = [c for c in commands if c[0] == "merge"]
        shards = [c for c in commands if "--shard" in c]
        if not merges:
            assert not shards
            continue
        if doc == "github":
            n = len(pipeline["jobs"]["shard"]["strategy"]["matrix"]["shard"])
        else:
            n = int(pipeline["shard"]["parallel"])
        assert all(c[c.index("--shard") + 1].endswith("/4") or "CI_NODE_TOTAL" in
                   c[c.index("--shard") + 1] for c in shards)
        inputs = merges[0][1:merges[0].index("--out")]
        assert inputs == [f"shard-{i}" for i in range(n)]
