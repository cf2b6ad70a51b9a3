"""Loading a judge's own model: resolve, refuse unsafe files, pin the weights by digest."""

from __future__ import annotations

from typing import Any

from certify.errors import ModelError


def resolve_judge_model(spec: str, revision: str | None) -> tuple[Any, dict[str, Any]]:
    """The judge model's source and the identity the evidence records (root digest, files)."""
    from certify.models.source import check_safety, identity, resolve

    source = resolve(spec, revision=revision)
    # A judge runs no custom code and loads no pickle: its verdicts gate a release.
    check_safety(source, allow_pickle=False, trust_remote_code=False)
    ident = identity(source)
    return source, {"model": spec, "revision": revision, "weights_digest": ident.root_digest,
                    "files": dict(sorted(ident.files.items())), "config": ident.config}


def load_tokenizer(source: Any, tokenizer_spec: str | None) -> Any:
    from transformers import AutoTokenizer

    path = source.load_dir
    if tokenizer_spec:
        from certify.models.source import resolve

        path = resolve(tokenizer_spec).load_dir
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the judge's tokenizer from {path}: {e}".splitlines()[0],
                         hint="give the judge a `tokenizer:` (a directory or hub id)") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def fill(template: str, prompt: str, response: str) -> str:
    """Substitute {prompt} and {response} literally (no str.format: a policy runs no code)."""
    return template.replace("{prompt}", prompt).replace("{response}", response)
