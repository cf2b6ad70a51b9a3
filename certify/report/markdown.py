"""summary.md for ``$GITHUB_STEP_SUMMARY``: verdict, check table, digests, verify command.

Every interpolated value is escaped for Markdown tables and inline HTML by the Jinja
environment's ``finalize`` hook, so no value can add rows, links or tags. The file
is capped well under GitHub's 1 MiB step-summary limit.
"""

from __future__ import annotations

import re
from typing import Any

from certify.report.view import ReportView

MAX_BYTES = 512 * 1024
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#!~])")


class _Code(str):
    """A value the template wants as an inline code span."""


def md_escape(value: Any) -> str:
    text = "" if value is None else str(value)
    if isinstance(value, _Code):
        # Code spans show backslashes literally; only backticks, newlines and table
        # pipes need neutralizing.
        inner = text.replace("`", "'").replace("\r", " ").replace("\n", " ")
        return "`" + inner.replace("|", "\\|") + "`"
    text = text.replace("&", "&amp;").replace("\r", " ").replace("\n", " ")
    return _SPECIAL.sub(r"\\\1", text)


def render_markdown(view: ReportView) -> bytes:
    from certify.report.html import environment

    env = environment(autoescape=False, finalize=md_escape)
    env.filters["code"] = _Code
    template = env.get_template("summary.md.j2")
    data = template.render(view=view).encode("utf-8")
    if len(data) > MAX_BYTES:
        cut = data[:MAX_BYTES].decode("utf-8", errors="ignore")
        data = (cut + "\n\n… summary truncated; see report.pdf and junit.xml\n").encode("utf-8")
    return data
