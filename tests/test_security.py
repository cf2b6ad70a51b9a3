"""Security promises tested for real: an offline audit makes no network connection, and a
signing key never appears in any output.

The audit runs (when the kernel allows it) inside a network namespace with no
interface but a downed loopback (`unshare -rn`), and always under a Python audit hook
that records every attempt at DNS resolution, an internet-socket connect/send, or a
URL request. It signs with a fresh key and renders every report format with debug
logging on, so the whole pipeline is covered.

Other promises are tested where their code lives (docs/reliability.md lists them):
keys 0600 and never overwritten, and verification that never trusts the envelope's
key id, in tests/report/test_attestation.py and test_tamper_property.py; model output
escaped in reports and no fetch outside packaged assets in
tests/report/test_report_hostile.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from certify.evidence import Evidence
from tests.conftest import ROOT, run_certify
from tests.test_fault_injection import ENV, POLICY, reference_run

NETWORK_EVENTS = """
import atexit, json, socket, sys
INET = (socket.AF_INET, socket.AF_INET6)
LOOPBACK = ("127.0.0.1", "::1", "localhost")
events = []
def hook(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                 "socket.gethostbyaddr", "urllib.Request"):
        events.append([event, repr(args[0])])
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind") \\
            and getattr(args[0], "family", None) in INET:
        # urllib3 binds a socket to ::1 port 0 on import to learn whether IPv6 exists;
        # a loopback bind reaches no network. Everything else counts.
        if not (event == "socket.bind" and args[1][0] in LOOPBACK and args[1][1] == 0):
            events.append([event, repr(args[1:])])
sys.addaudithook(hook)
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(events)))
interfaces = [name for _, name in socket.if_nameindex()]
open(sys.argv[2], "w").write(json.dumps(interfaces))
from certify.cli import main
main(sys.argv[3:])
"""


def _unshare_net() -> list[str]:
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    return ["unshare", "-rn"] if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def reference(tiny_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return reference_run(tmp_path_factory)


@pytest.fixture(scope="module")
def offline_audit(reference: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A signed audit with every report format, debug logs on, network watched."""
    tmp = tmp_path_factory.mktemp("offline")
    keys = run_certify("keygen", "--out", str(tmp / "keys"))
    assert keys.returncode == 0, keys.stderr
    events, interfaces, out = tmp / "events.json", tmp / "interfaces.json", tmp / "run"
    namespace = _unshare_net()
    proc = subprocess.run(
        [*namespace, sys.executable, "-c", NETWORK_EVENTS, str(events), str(interfaces),
         "-vv", "audit", "builtin:tiny-chat", "--policy", str(POLICY), "--out", str(out),
         "--key", str(tmp / "keys" / "certify.key")],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **ENV, "HF_HUB_OFFLINE": "1"})
    return {"proc": proc, "events": json.loads(events.read_text()),
            "interfaces": json.loads(interfaces.read_text()), "namespace": bool(namespace),
            "run": out, "keys": tmp / "keys", "keygen_output": keys.stdout + keys.stderr}


def test_offline_audit_makes_no_network_connection(offline_audit: dict[str, Any],
                                                   reference: Any) -> None:
    proc = offline_audit["proc"]
    assert proc.returncode == reference[2], proc.stderr[-3000:]
    assert offline_audit["events"] == [], offline_audit["events"]
    if offline_audit["namespace"]:  # and it did not need one: there was none to use
        assert offline_audit["interfaces"] == ["lo"]
    run = offline_audit["run"]
    for name in ("evidence.json", "report.pdf", "report.html", "junit.xml", "summary.md",
                 "certify.intoto.jsonl"):
        assert (run / name).is_file(), name
    ev = Evidence.read(run / "evidence.json")
    ref = Evidence.read(reference[0] / "evidence.json")
    assert ev.verdict is not None and ref.verdict is not None
    assert ev.verdict.overall == ref.verdict.overall
    verified = run_certify("verify", str(run), "--key", str(offline_audit["keys"] / "certify.pub"))
    assert verified.returncode == 0, verified.stdout


def _secrets(private_key: Path) -> list[str]:
    """Every form the private key could leak in: PEM body lines, raw bytes (hex, base64)."""
    from cryptography.hazmat.primitives import serialization

    pem = private_key.read_text()
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return [*body, raw.hex(), base64.b64encode(raw).decode().rstrip("=")]


def test_the_private_key_never_appears_in_any_output(offline_audit: dict[str, Any]) -> None:
    secrets = _secrets(offline_audit["keys"] / "certify.key")
    assert all(len(s) >= 16 for s in secrets)
    proc = offline_audit["proc"]
    assert "DEBUG" in proc.stderr  # debug logging was on, and still nothing leaked
    texts = {"stdout": proc.stdout, "stderr": proc.stderr,
             "keygen": offline_audit["keygen_output"]}
    for path in sorted(p for p in offline_audit["run"].rglob("*") if p.is_file()):
        texts[str(path)] = path.read_bytes().decode("latin-1")
    assert len(texts) > 8
    leaks = [(where, s[:8]) for where, text in texts.items() for s in secrets if s in text]
    assert leaks == []


def test_the_network_watch_sees_a_real_attempt(tmp_path: Path) -> None:
    """Negative control: with HF_HUB_OFFLINE unset, resolving an uncached hub model does try
    the network (here a closed local port), and the watch records it."""
    events, interfaces = tmp_path / "events.json", tmp_path / "interfaces.json"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE",
                                                            "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run(
        [sys.executable, "-c", NETWORK_EVENTS, str(events), str(interfaces), "audit",
         "certify-test/not-cached", "--policy", str(POLICY), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT,
        env={**env, **ENV, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2"})
    assert proc.returncode == 2, proc.stderr
    assert "not available" in proc.stderr
    recorded = json.loads(events.read_text())
    assert any(e[0] == "socket.connect" and "9)" in e[1] for e in recorded), recorded
