"""Turn (system, prompt, response) into token ids the same way for training and generation.

Models with a chat template use it (``apply_chat_template``). A tokenizer without
one falls back to the documented plain format ``User: {prompt}\\nAssistant:`` with
the tokenizer's BOS token in front; the evidence records which was used.
"""

from __future__ import annotations

from typing import Any, Protocol

FALLBACK_TEMPLATE = "plain: '{bos}User: {prompt}\\nAssistant:' (no chat template in tokenizer)"


class PromptTransform(Protocol):
    """Rewrites an evaluation prompt before generation: a jailbreak wrapper, a trigger, a
    translation. Attacks set one through the attack contract; the judges still see the
    original prompt."""

    def __call__(self, prompt: str) -> str: ...

    def identity(self) -> dict[str, Any]:
        """What the evidence records about it (name, version, parameters)."""
        ...


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: Any, prompt: str, system: str | None = None) -> str:
    """The text a model sees before it answers ``prompt``."""
    if has_chat_template(tokenizer):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        text: str = tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        return text
    bos = tokenizer.bos_token or ""
    head = f"{system}\n" if system else ""
    return f"{bos}{head}User: {prompt}\nAssistant:"


def response_text(tokenizer: Any, prompt_text: str, response: str) -> str:
    """The target continuation: the response and the end-of-turn token."""
    sep = "" if prompt_text.endswith((" ", "\n")) else " "
    return f"{sep}{response}{tokenizer.eos_token or ''}"


def encode_pair(tokenizer: Any, prompt: str, response: str, system: str | None = None,
                max_length: int = 512) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with the prompt masked (-100): loss only on the response."""
    p_text = format_prompt(tokenizer, prompt, system)
    p_ids = tokenizer(p_text, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response_text(tokenizer, p_text, response),
                      add_special_tokens=False)["input_ids"]
    ids = (p_ids + r_ids)[:max_length]
    labels = ([-100] * len(p_ids) + r_ids)[:max_length]
    return ids, labels


def template_description(tokenizer: Any) -> str:
    if has_chat_template(tokenizer):
        import hashlib

        digest = hashlib.sha256(tokenizer.chat_template.encode()).hexdigest()[:16]
        return f"chat_template sha256:{digest}"
    return FALLBACK_TEMPLATE
