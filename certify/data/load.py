"""Resolve and load datasets; validate rows; hash what was read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from certify import registry
from certify._io import canonical_json, sha256_bytes
from certify.errors import DataError
from certify.registry import Params

HF_PREFIX = "hf:"
ROW_FIELDS = ("id", "prompt", "response", "answer", "category", "label", "task", "choices")


class DatasetProvider(Protocol):
    """Datasets named ``PREFIX:NAME`` (``registry.provide("dataset", PREFIX, ...)``); the
    embedded demo's bundled ``builtin:NAME`` files are one."""

    licence: str
    """The licence recorded when a dataset reference does not name one."""

    def names(self) -> list[str]: ...

    def path(self, name: str) -> Path:
        """The dataset's file (.jsonl, .json, .csv or .parquet); need not exist."""
        ...


def dataset_provider(source: str) -> tuple[DatasetProvider, str] | None:
    """(provider, NAME) for ``PREFIX:NAME`` sources of a registered provider, else None."""
    return registry.split_prefix("dataset", source)


class DatasetRef(Params):
    """Where a dataset comes from and how its columns map onto certify's row fields."""

    source: str = Field(min_length=1)
    """PREFIX:NAME of a dataset provider (builtin:NAME for the bundled demo data), a local
    .jsonl/.json/.csv/.parquet path, a directory written by
    datasets' save_to_disk, or hf:ORG/NAME for a dataset in the user's HF cache."""
    split: str | None = None
    config: str | None = None
    """The hub dataset's configuration (subset), e.g. ``cyber-forget-corpus`` of
    ``hf:cais/wmdp-corpora``; hub sources only."""
    revision: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    """certify field -> column name, e.g. {prompt: question, category: category_id}.
    ``{prompt: ""}`` says the rows have no prompt (documents, such as a relearning corpus's
    ``text``): every row's prompt is empty."""
    categories: list[str] | None = None
    """Keep only rows in these categories (after category_map)."""
    category_map: dict[str, str] = Field(default_factory=dict)
    """Rename source categories to certify's, e.g. {violence: weapons}. A category column
    holding a mapping of flags (BeaverTails: {violence: true, ...}) gives the row the first
    flagged category, preferring those named here or in `categories`."""
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Keep only rows whose column equals the value, e.g. {is_safe: false}."""
    label_map: dict[str, str] = Field(default_factory=dict)
    """Rename label values, e.g. {"false": harmful, "true": benign} for an is_safe column."""
    licence: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _config_is_for_hub(self) -> DatasetRef:
        if self.config is not None and not self.source.startswith(HF_PREFIX):
            raise ValueError(f"`config` ({self.config!r}) names a hub dataset's configuration; "
                             f"{self.source!r} is not an hf:ORG/NAME source (an overlay that "
                             "points the reference at a local file also sets `config: null`)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo,
              ) -> dict[str, Any]:
        """Leave ``config`` out when it is not set, so the cell ids of every reference
        written before it existed (they hash the dumped parameters) stay the same."""
        out: dict[str, Any] = handler(self)
        if out.get("config", 0) is None:
            out.pop("config")
        return out

    @property
    def label(self) -> str:
        source = self.source + (f"/{self.config}" if self.config else "")
        return source + (f"[{self.split}]" if self.split else "")


@dataclass(frozen=True)
class Row:
    """One dataset row. Which fields must be present depends on the consumer."""

    id: str
    prompt: str
    response: str | None = None
    answer: str | None = None
    category: str | None = None
    label: str | None = None
    task: str | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: its rows and the identity that goes into the evidence."""

    name: str
    source: str
    sha256: str
    rows: list[Row]
    licence: str = ""
    categories: list[str] = field(default_factory=list)

    def require(self, *fields: str) -> None:
        """Raise DataError naming the first row that lacks one of ``fields``."""
        for i, row in enumerate(self.rows):
            for f in fields:
                if not getattr(row, f):
                    raise DataError(
                        f"dataset {self.name}: row {i + 1} (id {row.id!r}) has no {f!r} field",
                        hint=f"every row of this dataset needs: {', '.join(fields)}; map columns "
                             "with `fields: {" + f + ": COLUMN}` in the dataset reference",
                    )

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "sha256": self.sha256,
                "n": len(self.rows), "licence": self.licence, "categories": self.categories}


def _read_records(path: Path, ref: DatasetRef) -> tuple[list[dict[str, Any]], bytes]:
    suffix = path.suffix.lower()
    if path.is_dir():
        return _read_hf_disk(path, ref)
    data = path.read_bytes()
    if suffix == ".jsonl":
        records = []
        for n, line in enumerate(data.decode("utf-8", errors="strict").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"dataset {path}: line {n} is not valid JSON ({e.msg})",
                                hint="each line of a .jsonl file must be one JSON object") from None
            if not isinstance(obj, dict):
                raise DataError(f"dataset {path}: line {n} is not a JSON object")
            records.append(obj)
        return records, data
    if suffix == ".json":
        obj = json.loads(data)
        if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
            raise DataError(f"dataset {path}: expected a JSON list of objects")
        return obj, data
    if suffix in (".csv", ".parquet"):
        import datasets

        kind = "csv" if suffix == ".csv" else "parquet"
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
        return [dict(r) for r in ds], data
    raise DataError(f"dataset {path}: unsupported file type {suffix!r}",
                    hint="use .jsonl, .json, .csv, .parquet, or a datasets save_to_disk directory")


def _read_hf_disk(path: Path, ref: DatasetRef) -> tuple[list[dict[str, Any]], bytes]:
    import datasets

    obj = datasets.load_from_disk(str(path))
    if isinstance(obj, datasets.DatasetDict):
        split = ref.split or next(iter(obj))
        if split not in obj:
            raise DataError(f"dataset {path}: no split {split!r}; splits are {', '.join(obj)}")
        obj = obj[split]
    records = [dict(r) for r in obj]
    return records, canonical_json(records)


def fetch_command(ref: DatasetRef) -> str:
    """The one command that puts a hub dataset where ``_read_hub`` finds it offline."""
    args = [repr(ref.source[len(HF_PREFIX):])]
    if ref.config:
        args.append(repr(ref.config))
    if ref.revision:
        args.append(f"revision={ref.revision!r}")
    args.append(f"split={(ref.split or 'train')!r}")
    return f'python -c "import datasets; datasets.load_dataset({", ".join(args)})"'


def _read_hub(ref: DatasetRef) -> tuple[list[dict[str, Any]], bytes]:
    import datasets

    repo = ref.source[len(HF_PREFIX):]
    try:
        ds = datasets.load_dataset(repo, ref.config, revision=ref.revision,
                                   split=ref.split or "train")
    except Exception as e:  # datasets raises many unrelated types for "not cached"
        raise DataError(
            f"cannot load Hugging Face dataset {repo!r} ({type(e).__name__}: {e})",
            hint=f"certify reads hub datasets from your local cache; put it there once, with "
                 f"network access and HF_HUB_OFFLINE unset: {fetch_command(ref)} (a gated "
                 f"dataset needs its terms accepted on huggingface.co/datasets/{repo} and "
                 "`hf auth login` first), or pass a local file",
        ) from None
    records = [dict(r) for r in ds]
    return records, canonical_json(records)


def _text(value: Any) -> str:
    # Booleans read the same from JSON, CSV and Arrow: "true"/"false".
    return str(value).lower() if isinstance(value, bool) else str(value)


def _category(value: Any, ref: DatasetRef) -> str | None:
    """One category for the row; flag mappings (BeaverTails) give the first flagged one."""
    if not isinstance(value, dict | list | tuple):
        return ref.category_map.get(_text(value), _text(value))
    names = [str(k) for k, v in value.items() if v] if isinstance(value, dict) else [
        str(v) for v in value]
    mapped = [ref.category_map.get(n, n) for n in names]
    preferred = [m for n, m in zip(names, mapped, strict=True)
                 if (ref.categories is not None and m in ref.categories)
                 or (ref.categories is None and n in ref.category_map)]
    return next(iter(preferred or mapped), None)


def _to_row(i: int, rec: dict[str, Any], ref: DatasetRef) -> Row | None:
    if any(rec.get(column) != value for column, value in ref.where.items()):
        return None
    values: dict[str, Any] = {"prompt": ""} if ref.fields.get("prompt") == "" else {}
    for f in ROW_FIELDS:
        column = ref.fields.get(f, f)
        if column and column in rec and rec[column] is not None:
            values[f] = rec[column]
    if isinstance(values.get("category"), dict):
        # Multi-label flags ({name: bool}, as in BeaverTails): one set flag names the
        # category; several are joined with "+", so a `categories` filter never admits a
        # row that also belongs to a held-out category; none leaves the row uncategorised.
        flags = sorted(str(k) for k, v in values.pop("category").items() if v)
        if flags:
            values["category"] = "+".join(flags)
    if "category" in values:
        values["category"] = _category(values["category"], ref)
    if ref.categories is not None and values.get("category") not in ref.categories:
        return None
    if "choices" in values:
        values["choices"] = tuple(str(c) for c in values["choices"])
    for f in ("prompt", "response", "answer", "label", "task"):
        if f in values and not isinstance(values[f], str):
            values[f] = _text(values[f])
    if "label" in values:
        values["label"] = ref.label_map.get(values["label"], values["label"])
    values.setdefault("id", str(i))
    values["id"] = str(values["id"])
    if "prompt" not in values:
        raise DataError(
            f"dataset {ref.label}: row {i + 1} has no prompt "
            f"(looked for column {ref.fields.get('prompt', 'prompt')!r}; it has "
            f"{', '.join(sorted(rec)) or 'no columns'})",
            hint="map the prompt column with `fields: {prompt: COLUMN}`",
        )
    return Row(**values)


def _check_columns(records: list[dict[str, Any]], ref: DatasetRef) -> None:
    """A mapped or filtered column that no row has is a typo, not an empty result."""
    if not records:
        raise DataError(f"dataset {ref.label} is empty",
                        hint="check the file, the split and the source")
    present = set().union(*(rec.keys() for rec in records))
    named = [("where", c) for c in ref.where] + [("fields", c) for c in ref.fields.values() if c]
    for where, column in named:
        if column not in present:
            raise DataError(f"dataset {ref.label}: `{where}` names column {column!r}, which no "
                            f"row has{registry.suggest(column, sorted(present))}",
                            hint=f"columns are: {', '.join(sorted(present))}")


_CACHE: dict[str, Dataset] = {}


def _file_stamp(ref: DatasetRef) -> list[int] | None:
    """Size and mtime of a local file, so an edited file is read again, not served stale."""
    if ref.source.startswith(HF_PREFIX) or dataset_provider(ref.source) is not None:
        return None
    try:
        stat = Path(ref.source).expanduser().stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def load_dataset(ref: DatasetRef | str) -> Dataset:
    """Load a dataset (cached per process). Raises DataError with the fix on any problem."""
    ref = ref if isinstance(ref, DatasetRef) else DatasetRef.model_validate(ref)
    key = canonical_json([ref.model_dump(), _file_stamp(ref)]).decode()
    if key in _CACHE:
        return _CACHE[key]
    provided = dataset_provider(ref.source)
    if provided is not None:
        provider, name = provided
        path = provider.path(name)
        if not path.is_file():
            prefix, known = ref.source.partition(":")[0], provider.names()
            raise DataError(f"no {prefix} dataset {name!r}{registry.suggest(name, known)}",
                            hint=f"{prefix} datasets: {', '.join(known)}")
        records, raw = _read_records(path, ref)
        licence = ref.licence or provider.licence
    elif ref.source.startswith(HF_PREFIX):
        records, raw = _read_hub(ref)
        licence = ref.licence
    else:
        path = Path(ref.source).expanduser()
        if not path.exists():
            raise DataError(f"dataset file {ref.source!r} does not exist",
                            hint="give an existing path, builtin:NAME, or hf:ORG/NAME")
        records, raw = _read_records(path, ref)
        licence = ref.licence
    _check_columns(records, ref)
    rows = [r for i, rec in enumerate(records) if (r := _to_row(i, rec, ref)) is not None]
    if not rows:
        raise DataError(f"dataset {ref.label} has no rows"
                        + (" in the requested categories" if ref.categories else ""),
                        hint="check the file, the split and the `categories` filter")
    categories = sorted({r.category for r in rows if r.category})
    ds = Dataset(ref.label, ref.source, sha256_bytes(raw), rows, licence, categories)
    _CACHE[key] = ds
    return ds
