"""The Ray executor: cells run in Ray actors; the driver alone writes the run directory.

Each actor wraps one :class:`certify.run.worker.Worker`, so a model is loaded once
per actor (not once per cell) and evaluators are built once. Actors ask Ray for
what a cell needs: one GPU each with ``--device cuda``, CPU threads, and an
estimate of host memory, so Ray places them only on machines that can run them.
The driver gives each idle actor the next pending cell (preferring a model the
actor already holds), writes every result the moment it arrives, and on Ctrl-C
kills the actors and re-raises: finished cells are on disk and the run resumes.

Ray is an optional dependency (``pip install "certify[ray]"``). Without
``--ray-address`` Ray's own discovery applies (``RAY_ADDRESS``, else a cluster
started with ``ray start`` on this machine, else a new local instance, which is
stopped after the run). certify's own code is shipped to the workers
(``runtime_env``); torch and the rest must be installed on every node, and the
model files must be readable at the same path on every node (a shared filesystem
or the same Hugging Face cache). An actor on another host re-hashes them, so a
different file under that path is an error, never a silent substitute.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from certify import stopping
from certify.errors import CertifyError, ModelError, RunError, UsageError
from certify.evidence import CellRecord
from certify.plan import CellSpec
from certify.run.cell import died_record
from certify.run.device import import_ray
from certify.run.progress import Progress
from certify.run.rundir import RunDir

log = logging.getLogger(__name__)

GIB = 1 << 30
# Host bytes per byte of weights on disk. CPU training holds the weights, the restore
# snapshot, gradients and two AdamW moments (5x) plus activations; on a GPU only the
# snapshot and the loading transient stay in host memory.
_HOST_FACTOR = {"cpu": 6, "cuda": 2}
_BASE_BYTES = GIB  # the interpreter with torch, transformers and peft imported
_GGUF_EXPANSION = 8  # quantized GGUF weights are de-quantized to float32 when loaded


@dataclass(frozen=True)
class ActorResources:
    """What one actor asks Ray for."""

    num_cpus: int
    num_gpus: int
    memory: int
    """Bytes of host memory (Ray's logical ``memory`` resource)."""

    def options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "memory": self.memory}


def resources(setup: Any) -> ActorResources:
    """One GPU per actor on CUDA; CPU threads; host memory for every model it may hold."""
    weights = sum(int(m["identity"].get("n_bytes", 0))
                  * (_GGUF_EXPANSION if m["source"].get("kind") == "gguf" else 1)
                  for m in setup.models.values())
    memory = _BASE_BYTES + _HOST_FACTOR["cuda" if setup.device == "cuda" else "cpu"] * weights
    return ActorResources(num_cpus=max(1, setup.threads or 1),
                          num_gpus=1 if setup.device == "cuda" else 0, memory=int(memory))


def actors_that_fit(nodes: list[dict[str, Any]], need: ActorResources) -> int:
    """How many actors the live nodes can host at once (each actor on one node)."""
    total = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        have = node.get("Resources", {})
        fits = [have.get("CPU", 0) // need.num_cpus, have.get("memory", math.inf) // need.memory]
        if need.num_gpus:
            fits.append(have.get("GPU", 0) // need.num_gpus)
        total += int(min(fits))
    return total


class CellActor:
    """Runs cells for the driver; holds its models between cells. Returns JSON, writes nothing."""

    def __init__(self, setup: dict[str, Any], driver_host: str) -> None:
        from certify.environment import hostname_hash
        from certify.run.device import check_device_here
        from certify.run.worker import Worker, WorkerSetup

        check_device_here(setup["device"], setup["dtype"], setup["autocast"])
        if hostname_hash() != driver_host:
            _check_models(setup["models"])
        self.worker = Worker(WorkerSetup(**setup))
        self.cells = self.model_loads = 0

    def ready(self) -> str:
        from certify.environment import hostname_hash

        return hostname_hash()

    def run(self, spec_json: str) -> tuple[str, list[dict[str, Any]]]:
        spec = CellSpec.model_validate_json(spec_json)
        self.cells += 1
        self.model_loads += spec.role not in self.worker.pool.loaded
        record, samples = self.worker.run(spec)
        return record.model_dump_json(), samples

    def stats(self) -> dict[str, Any]:
        """Cells run and models loaded by this actor (the run's events record them)."""
        return {"host": self.ready(), "cells": self.cells, "model_loads": self.model_loads}


def _check_models(models: dict[str, dict[str, Any]]) -> None:
    """On another host, the files under the driver's paths must be the same model."""
    from certify.models.source import ModelSource, identity

    for role, m in models.items():
        source = ModelSource(**{**m["source"], "path": Path(m["source"]["path"])})
        if not source.path.exists():
            raise ModelError(f"the {role} model {source.spec!r} is not at {source.path} on this "
                             "Ray node", hint="put the model on a filesystem every node mounts "
                             "at the same path (or in each node's Hugging Face cache)")
        digest = identity(source).root_digest
        if digest != m["identity"]["root_digest"]:
            raise ModelError(f"the {role} model at {source.path} on this Ray node has digest "
                             f"{digest[:12]}, not {m['identity']['root_digest'][:12]}",
                             hint="every node must see the same model files")


def runtime_env() -> dict[str, Any]:
    """Ship this certify to the workers, so every node runs the driver's exact code."""
    import certify

    return {"py_modules": [str(Path(certify.__file__).parent)]}


def _connect(ray: Any, address: str | None) -> bool:
    """Attach to (or start) Ray. True when this run started it and must stop it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING, "configure_logging": False,
                              "runtime_env": runtime_env()}
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"cannot connect to Ray at {address or 'a new local instance'}: {e}",
                         hint="check --ray-address (e.g. ray://HEAD:10001 or HEAD:6379), or "
                              "leave it out to start a local Ray instance") from None
    return True


def _new_actor(ray: Any, setup: Any) -> Any:
    from certify.environment import hostname_hash

    need = resources(setup)
    return ray.remote(CellActor).options(**need.options()).remote(
        asdict(replace(setup, threads=need.num_cpus)), hostname_hash())


def _start_actors(ray: Any, setup: Any, n_cells: int) -> list[Any]:
    need = resources(setup)
    fit = actors_that_fit(ray.nodes(), need)
    if fit < 1:
        raise UsageError(
            f"no Ray node can host a certify worker needing {need.num_cpus} CPU, "
            f"{need.num_gpus} GPU and {need.memory / GIB:.1f} GiB of memory",
            hint="add a node with those resources, or use --device cpu / --executor local")
    actors = [_new_actor(ray, setup) for _ in range(min(fit, n_cells))]
    try:
        ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as e:
        raise RunError(f"a Ray worker could not start: {_cause(e)}",
                       hint="the message above names the problem; fix it and resume") from None
    return actors


def _cause(error: Any) -> str:
    cause = getattr(error, "cause", None) or getattr(error, "error_msg", None) or error
    return str(cause).strip().splitlines()[-1][:500]


def _died(spec: CellSpec, error: Any) -> CellRecord:
    return died_record(spec, f"the Ray worker running this cell died: {_cause(error)}")


class _Dispatcher:
    """Hands pending cells to idle actors and tracks what is in flight."""

    def __init__(self, todo: list[CellSpec]) -> None:
        self.todo = list(todo)
        self.held: dict[int, set[str]] = {}
        self.in_flight: dict[Any, tuple[int, CellSpec]] = {}

    def next_for(self, actor: int) -> CellSpec | None:
        """A cell of a model this actor already loaded, else the next one in plan order."""
        if not self.todo:
            return None
        held = self.held.setdefault(actor, set())
        index = next((i for i, s in enumerate(self.todo) if s.role in held), 0)
        spec = self.todo.pop(index)
        held.add(spec.role)
        return spec


def run_ray(todo: list[CellSpec], run_dir: RunDir, setup: Any, progress: Progress, *,
            address: str | None = None) -> None:
    """Run ``todo`` on Ray; write each result as it finishes. Ctrl-C kills the actors."""
    ray = import_ray()
    started = _connect(ray, address)
    actors: list[Any] = []
    try:
        actors = _start_actors(ray, setup, len(todo))
        run_dir.event("ray_start", actors=len(actors), resources=resources(setup).options())
        _drive(ray, actors, _Dispatcher(todo), run_dir, setup, progress)
        run_dir.event("ray_done", actors=ray.get([a.stats.remote() for a in actors]))
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def _submit(actors: list[Any], i: int, disp: _Dispatcher, run_dir: RunDir,
            progress: Progress) -> None:
    spec = disp.next_for(i)
    if spec is None:
        return
    progress.cell_started(spec)
    run_dir.event("cell_start", cell=spec.id, worker=f"ray-actor-{i}")
    disp.in_flight[actors[i].run.remote(spec.model_dump_json())] = (i, spec)


def _drive(ray: Any, actors: list[Any], disp: _Dispatcher, run_dir: RunDir, setup: Any,
           progress: Progress) -> None:
    for i in range(len(actors)):
        _submit(actors, i, disp, run_dir, progress)
    while disp.in_flight:
        done, _ = ray.wait(list(disp.in_flight), num_returns=1, timeout=1.0)
        stopping.check()  # SIGTERM/SIGINT: run_ray's finally kills the actors
        if not done:
            continue
        i, spec = disp.in_flight.pop(done[0])
        try:
            record_json, samples = ray.get(done[0])
            record = CellRecord.model_validate_json(record_json)
        except ray.exceptions.RayActorError as e:
            log.error("Ray worker died running cell %s: %s", spec.id, e)
            record, samples = _died(spec, e), []
            actors[i] = _new_actor(ray, setup)
            disp.held[i] = set()
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, CertifyError):
                raise cause from None  # e.g. a model or dataset the worker cannot load
            raise RunError(f"cell {spec.id} failed in a Ray worker: {_cause(e)}") from None
        run_dir.write_cell(record, samples)
        progress.cell_finished(record)
        _submit(actors, i, disp, run_dir, progress)
