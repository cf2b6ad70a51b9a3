"""The Ray executor without a cluster: Ray is optional, and actor sizing is plain arithmetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._scale import SCALE_POLICY
from tests.conftest import ROOT


def test_missing_ray_is_a_usage_error_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None; from certify.cli import main; "
            f"main(['audit', 'builtin:tiny-chat', '--policy', {SCALE_POLICY!r}, '--out', "
            f"{str(tmp_path / 'run')!r}, '--executor', 'ray'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert 'pip install "certify[ray]"' in proc.stderr
    assert not (tmp_path / "run").exists()


def _setup(device: str, kind: str = "builtin", n_bytes: int = 4 << 20) -> object:
    from certify.run.worker import WorkerSetup

    model = {"source": {"spec": "m", "kind": kind, "path": "/m", "revision": None},
             "identity": {"n_bytes": n_bytes}}
    return WorkerSetup(policy={}, models={"candidate": model, "reference": model}, device=device)


def test_actor_resources_follow_the_device_and_the_model_size() -> None:
    from certify.run.ray_executor import GIB, resources

    cpu, cuda = resources(_setup("cpu")), resources(_setup("cuda"))
    assert (cpu.num_cpus, cpu.num_gpus, cuda.num_gpus) == (1, 0, 1)
    assert cpu.memory == GIB + 6 * 2 * (4 << 20)  # two models, weights+snapshot+grads+AdamW
    assert cuda.memory == GIB + 2 * 2 * (4 << 20)  # on a GPU only the snapshot stays on host
    gguf = resources(_setup("cpu", kind="gguf"))
    assert gguf.memory - GIB == 8 * (cpu.memory - GIB)  # de-quantized when loaded


def test_actor_count_is_what_the_live_nodes_can_host() -> None:
    from certify.run.ray_executor import GIB, ActorResources, actors_that_fit

    need = ActorResources(num_cpus=1, num_gpus=1, memory=2 * GIB)
    nodes = [{"Alive": True, "Resources": {"CPU": 16, "GPU": 4, "memory": 64 * GIB}},
             {"Alive": True, "Resources": {"CPU": 2, "GPU": 8, "memory": 64 * GIB}},
             {"Alive": True, "Resources": {"CPU": 64, "memory": 256 * GIB}},  # no GPU
             {"Alive": False, "Resources": {"CPU": 8, "GPU": 8, "memory": 64 * GIB}}]
    assert actors_that_fit(nodes, need) == 4 + 2
    assert actors_that_fit(nodes[2:], need) == 0
    big = ActorResources(num_cpus=1, num_gpus=0, memory=100 * GIB)
    assert actors_that_fit(nodes, big) == 2  # only the 256 GiB node fits, twice


def test_a_worker_on_another_host_refuses_different_or_missing_model_files(
        tiny_chat: Path, tmp_path: Path) -> None:
    import pytest

    from certify.errors import ModelError
    from certify.models.source import identity, resolve
    from certify.run.ray_executor import _check_models

    source = resolve("builtin:tiny-chat")
    good = {"source": {"spec": source.spec, "kind": source.kind, "path": str(source.path),
                       "revision": source.revision},
            "identity": {"root_digest": identity(source).root_digest}}
    _check_models({"candidate": good})  # the same files: accepted
    other = {**good, "identity": {"root_digest": "0" * 64}}
    with pytest.raises(ModelError, match="has digest"):
        _check_models({"candidate": other})
    missing = {**good, "source": {**good["source"], "path": str(tmp_path / "nowhere")}}
    with pytest.raises(ModelError, match="same path"):
        _check_models({"candidate": missing})
