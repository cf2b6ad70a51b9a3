"""Resolve a MODEL argument to files on disk and compute its identity. Torch-free.

MODEL is one of: ``PREFIX:NAME`` from a registered model provider (the embedded
demo's ``builtin:NAME``, built locally on first use), a local Hugging Face
directory, a ``.gguf`` file, or a hub id ``org/name`` (read from the local HF cache;
``--revision`` pins a commit). The identity is the per-file sha256 and the
root digest computed as OpenSSF model-signing does (sha256 over the per-file
digests in path order), so certify's subject digest matches `model_signing`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from certify import registry
from certify.errors import ModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE_SUFFIXES = (".safetensors", ".gguf")
IGNORED = (".git", ".gitattributes", ".cache", ".huggingface")


class ModelProvider(Protocol):
    """Models named ``PREFIX:NAME`` (registered with ``registry.provide("model", PREFIX, ...)``).

    The source's kind is the prefix; the model's files are an ordinary Hugging Face
    directory, so everything after ``resolve`` treats it like a user's model.
    """

    def names(self) -> list[str]: ...

    def locate(self, name: str, *, build: bool) -> tuple[Path, str | None]:
        """The model's directory (made first when ``build``) and its revision."""
        ...

    def shape(self, name: str) -> tuple[dict[str, Any], str, Path | None]:
        """Without building: its config.json-like dict, where that comes from, and a
        tokenizer.json already on disk (or None)."""
        ...


def model_provider(spec: str) -> tuple[ModelProvider, str] | None:
    """(provider, NAME) for ``PREFIX:NAME`` specs of a registered provider, else None."""
    return registry.split_prefix("model", spec)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are, and how to load them."""

    spec: str
    kind: str
    """A provider's prefix (``builtin``), or directory, gguf or hub."""
    path: Path
    """Directory for builtin/directory/hub; the .gguf file itself for gguf."""
    revision: str | None = None

    @property
    def gguf_file(self) -> str | None:
        return self.path.name if self.kind == "gguf" else None

    @property
    def load_dir(self) -> Path:
        return self.path.parent if self.kind == "gguf" else self.path


@dataclass(frozen=True)
class ModelIdentity:
    """What the evidence records about a model: enough to re-hash and compare."""

    spec: str
    kind: str
    revision: str | None
    root_digest: str
    files: dict[str, str]
    n_bytes: int
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "revision": self.revision,
                "root_digest": self.root_digest, "files": dict(sorted(self.files.items())),
                "n_bytes": self.n_bytes, "config": self.config}


def resolve(spec: str, *, revision: str | None = None, build: bool = True) -> ModelSource:
    """Find the model's files. Builtin models are built on first use when ``build``."""
    provided = model_provider(spec)
    if provided is not None:
        provider, name = provided
        path, version = provider.locate(name, build=build)
        return ModelSource(spec, spec.partition(":")[0], path, version)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"model file {spec!r} is not a .gguf file",
                             hint="give a .gguf file, a Hugging Face model directory, "
                                  "a hub id, or builtin:tiny-chat")
        return ModelSource(spec, "gguf", path.resolve())
    if path.is_dir():
        return ModelSource(spec, "directory", path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ModelSource(spec, "hub", _hub_snapshot(spec, revision), revision)
    raise ModelError(f"model {spec!r} not found: no such file or directory",
                     hint="give a local directory with config.json, a .gguf file, a hub id "
                          "(org/name) in your HF cache, or builtin:tiny-chat")


def _hub_snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as e:  # offline/not-cached/gated errors differ by hub version
        raise ModelError(
            f"hub model {repo_id!r}{f'@{revision}' if revision else ''} is not available "
            f"({type(e).__name__})",
            hint="download it first (`hf download " + repo_id + "`) or pass a local directory; "
                 "with HF_HUB_OFFLINE=1 certify reads only the local cache",
        ) from None


def _model_files(source: ModelSource) -> list[Path]:
    if source.kind == "gguf":
        return [source.path]
    files = []
    for root, dirs, names in os.walk(source.path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED)
        files += [Path(root) / n for n in sorted(names) if n not in IGNORED]
    return files


def check_safety(source: ModelSource, *, allow_pickle: bool, trust_remote_code: bool) -> None:
    """Refuse pickle-only weights and custom code unless the user asked for them."""
    if source.kind == "gguf":
        return
    names = [p.name for p in _model_files(source)]
    if not any(n.endswith(SAFE_SUFFIXES) for n in names):
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        if pickles and not allow_pickle:
            raise ModelError(
                f"model {source.spec!r} has only pickle weights ({', '.join(pickles[:3])}); "
                "loading pickle can execute arbitrary code",
                hint="convert the weights to safetensors, or pass --allow-pickle if you trust "
                     "the files",
            )
        if not pickles:
            raise ModelError(f"model {source.spec!r} has no weight files (.safetensors, .bin)",
                             hint="is the download complete? certify needs config.json and "
                                  "weights in the directory")
    for path in _model_files(source):
        problem = safetensors_problem(path) if path.name.endswith(".safetensors") else None
        if problem:
            raise ModelError(f"model {source.spec!r}: weight file {path.name} {problem}",
                             hint="download or save the model again; an interrupted download "
                                  "or copy leaves a truncated file")
    config = read_config(source)
    if config.get("auto_map") and not trust_remote_code:
        raise ModelError(
            f"model {source.spec!r} needs custom Python code from its repository (auto_map in "
            "config.json)",
            hint="review the code, then pass --trust-remote-code to run it",
        )


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be whole (its header or its size), or None.

    Reads only the header: 8 bytes of length, then JSON naming each tensor's byte range.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"is truncated ({size} bytes, shorter than its header)"
        n = int.from_bytes(head, "little")
        if n > min(size - 8, 100_000_000):
            return f"is truncated or corrupt (header of {n} bytes in a {size}-byte file)"
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "has a corrupt header (not the safetensors format)"
    if 8 + n + end > size:
        return f"is truncated ({size} bytes; its tensors need {8 + n + end})"
    return None


def read_config(source: ModelSource) -> dict[str, Any]:
    if source.kind == "gguf":
        return {"format": "gguf", "file": source.path.name}
    path = source.path / "config.json"
    if not path.is_file():
        raise ModelError(f"model directory {source.spec!r} has no config.json",
                         hint="point at a Hugging Face model directory (save_pretrained output)")
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not valid JSON ({e})") from None
    return config


def root_digest(files: dict[str, str]) -> str:
    """model-signing's root digest: sha256 over the raw per-file digests in path order."""
    h = hashlib.sha256()
    for _, digest in sorted(files.items()):
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def file_digests(source: ModelSource) -> dict[str, str]:
    """Per-file sha256 through OpenSSF model-signing's hashing API (interoperable digests)."""
    from model_signing import hashing

    config = hashing.Config().set_allow_symlinks(True)
    if source.kind == "gguf":
        manifest = config.hash(source.path)
        return {source.path.name: next(d.digest.digest_hex
                                       for d in manifest.resource_descriptors())}
    config.set_ignored_paths(paths=[source.path / n for n in IGNORED])
    return {d.identifier: d.digest.digest_hex
            for d in config.hash(source.path).resource_descriptors()}


def identity(source: ModelSource) -> ModelIdentity:
    """Hash every file of the model and summarise its config."""
    digests = file_digests(source)
    config = read_config(source)
    keep = ("architectures", "model_type", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "vocab_size", "torch_dtype", "format",
            "file")
    return ModelIdentity(source.spec, source.kind, source.revision, root_digest(digests), digests,
                         sum(f.stat().st_size for f in _model_files(source)),
                         {k: config[k] for k in keep if k in config})
