"""certify's exception tree. Every error says what went wrong and how to fix it.

    CertifyError                      base; never raised directly
    ├── UsageError          exit 2    bad command-line usage
    ├── PolicyError         exit 2    a policy file is malformed (lists every problem)
    ├── InputError          exit 2    a model, dataset or key cannot be used as given
    │   ├── ModelError
    │   └── DataError
    ├── RunDirError         exit 2    the run directory belongs to another audit, or is locked
    ├── RunError            exit 3    the run could not complete (a cell errored, data missing)
    │   └── CellError                 one cell failed (NaN loss, out of memory, ...)
    ├── VerificationError   exit 4    a signature, digest or embedded copy does not match
    └── Interrupted         exit 130  SIGINT (Ctrl-C) or SIGTERM; the run directory resumes

Exit codes are mapped here and nowhere else (see ``exit_code_for``).
"""

from __future__ import annotations


class CertifyError(Exception):
    """Base of every error certify raises on purpose."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(CertifyError):
    """The command line asks for something impossible."""

    exit_code = 2


class PolicyError(CertifyError):
    """A policy file is malformed. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"policy {source} has {len(problems)} {noun}; nothing was run:\n{lines}",
            hint="fix the fields named above, then check with `certify policy validate FILE`",
        )


class InputError(CertifyError):
    """A model, dataset, key or other input cannot be used as given."""

    exit_code = 2


class ModelError(InputError):
    """A model cannot be found, trusted or loaded."""


class DataError(InputError):
    """A dataset cannot be found or has malformed rows."""


class RunDirError(CertifyError):
    """The run directory belongs to a different audit, or another process holds it."""

    exit_code = 2


class RunError(CertifyError):
    """The audit could not complete; its run directory resumes."""

    exit_code = 3


class CellError(RunError):
    """One cell failed. Recorded in the cell's result as status ``error``."""

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class VerificationError(CertifyError):
    """Verification of a signed run directory failed."""

    exit_code = 4


class Interrupted(CertifyError):
    """SIGINT or SIGTERM stopped the run (certify.stopping). Finished cells are kept."""

    exit_code = 130
    MESSAGE = "interrupted: re-run the same command to resume"

    def __init__(self, run_dir: object = None) -> None:
        kept = f" (finished cells are kept in {run_dir})" if run_dir is not None else ""
        super().__init__(self.MESSAGE + kept)


def exit_code_for(exc: BaseException) -> int:
    """Map any exception to certify's documented exit code."""
    if isinstance(exc, CertifyError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted.exit_code
    return RunError.exit_code
