"""Signed attestations: an in-toto Statement in a DSSE envelope, and offline verification.

``sign_run`` writes ``certify.intoto.jsonl`` into a run directory; ``verify_run``
checks it step by step against a pinned public key. Torch-free.
"""

from __future__ import annotations

from certify.attest.keys import KEY_TYPES, keygen
from certify.attest.sign import prepare_signer, sign_run
from certify.attest.statement import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE
from certify.attest.verify import Step, Verification, verify_run

__all__ = ["KEY_TYPES", "PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "Step",
           "Verification", "keygen", "prepare_signer", "sign_run", "verify_run"]
