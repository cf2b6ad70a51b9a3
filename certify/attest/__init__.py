"""Signed attestations: an in-toto Statement in a DSSE envelope, and offline verification.

``sign`` writes ``certify.intoto.jsonl`` into a run directory (it signs what is there
and renders nothing); ``verify_run`` checks it step by step against a pinned public
key. Torch-free.
"""

from __future__ import annotations

from certify.attest.keys import KEY_TYPES, keygen
from certify.attest.sign import report_is_stale, sign, signed_by, signer_identity
from certify.attest.statement import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE
from certify.attest.steps import Step, Verification
from certify.attest.verify import verify_run

__all__ = ["KEY_TYPES", "PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "Step",
           "Verification", "keygen", "report_is_stale", "sign", "signed_by", "signer_identity",
           "verify_run"]
