"""`certify view`: filters, redaction, headers, and a real headless Chromium on a hostile run.

The README demo run (the shared ``demo_run`` fixture) is browsed as it is, and a copy of
it carries one hostile sample: markup, script, an ``onerror`` image, ``javascript:`` and
other links that would change the page or request a URL from a logging server here if
any of it ran. A positive control serves the same payload unescaped from the logging
server to the same browser and sees it run, so "nothing ran" means something.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from certify._io import sha256_file
from tests.conftest import ROOT, SignedRun

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not "
                                    "installed (scripts/install.sh --dev installs it)")


# --- the server, as a user starts it -------------------------------------------------------

@contextmanager
def serving(run_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``certify view RUN_DIR --port 0`` in its own process; its printed URL."""
    # Started with SIGINT ignored, as CI runners and pytest-xdist workers start processes:
    # Ctrl-C must still stop it (an ignored disposition is inherited across exec).
    proc = subprocess.Popen([sys.executable, "-m", "certify", "view", str(run_dir), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert found, (first, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        yield found.group(0), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def fetch(url: str, method: str = "GET",
          host: str | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method)
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")


def chromium_dom(url: str, profile: Path) -> str:
    """The DOM after load, as headless Chromium serializes it (scripts, if any, have run)."""
    assert CHROMIUM is not None
    out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", "--disable-extensions", "--disable-sync",
                          "--disable-background-networking", f"--user-data-dir={profile}",
                          "--virtual-time-budget=3000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "<html" in out.stdout, out.stderr[-2000:]
    return out.stdout


@contextmanager
def request_log() -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """A server on 127.0.0.1 that logs every path asked of it; ``pages`` it serves as HTML."""
    log: list[str] = []
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            log.append(self.path)
            body = pages.get(self.path, "").encode("utf-8")
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log, pages
    finally:
        server.shutdown()
        server.server_close()


# --- a run with one hostile sample ----------------------------------------------------------

def hostile_payload(probe: str) -> str:
    """Markup that, were it ever rendered as HTML, changes the page and requests ``probe``."""
    mark = "document.documentElement.setAttribute('data-pwned','yes')"
    return (f"</pre></div><script>{mark};new Image().src='{probe}/script'</script>"
            f"<img src=x onerror=\"{mark};new Image().src='{probe}/onerror'\">"
            f"<img src=\"{probe}/img\"><a id=\"jslink\" href=\"javascript:{mark}\">click</a>"
            f"<iframe src=\"{probe}/iframe\"></iframe><link rel=stylesheet href=\"{probe}/css\">"
            f"<svg onload=\"{mark}\"></svg><style>body{{background:url({probe}/style)}}</style>")


def hostile_copy(run: Path, dst: Path, probe: str) -> Path:
    """A copy of ``run`` whose first harm-eval samples file gains one hostile, benign-judged
    sample (benign, so the viewer shows its text), with the evidence's digest updated so the
    viewer trusts the file."""
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    evidence = json.loads((dst / "evidence.json").read_text())
    cell = next(c for c in evidence["cells"] if c["samples_file"] and c["purpose"] == "harmful")
    payload = hostile_payload(probe)
    row = {"category": "hostile", "eval": "harm", "item": "hostile-1",
           "judges": {"canary": "benign", "keywords": "benign"}, "label": "benign",
           "prompt": payload, "reason": payload, "response": payload, "step": 4, "task": None}
    path = dst / cell["samples_file"]
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    cell["samples_sha256"] = sha256_file(path)
    (dst / "evidence.json").write_text(json.dumps(evidence, indent=2))
    return dst


# --- tests --------------------------------------------------------------------------------

def _articles(html: str) -> list[str]:
    return re.findall(r'<article class="sample".*?</article>', html, flags=re.S)


def test_filters_redaction_headers_and_ctrl_c(demo_run: SignedRun) -> None:
    """Label, disagreement and category filters return exactly the samples that match
    (counted against the samples files themselves); harmful responses stay redacted; the
    server refuses writes and foreign Host headers, sets a script-free CSP, and Ctrl-C
    stops it with exit 0."""
    rows = [json.loads(line) for p in sorted((demo_run.run_dir / "samples").glob("*.jsonl"))
            for line in p.read_text().splitlines()]
    split = [r for r in rows if len(set((r.get("judges") or {}).values())) > 1]
    cyber_refusals = [r for r in rows if r.get("category") == "cyber"
                      and r.get("label") == "refusal"]
    assert split and cyber_refusals
    with serving(demo_run.run_dir) as (url, proc):
        status, headers, home = fetch(url)
        assert status == 200 and "cells" in home.lower()
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'none'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        assert fetch(url, method="POST")[0] == 405
        assert fetch(url, host="attacker.example")[0] == 421

        _, _, page = fetch(url + "samples?disagree=1")
        assert f">{len(split)} of {len(rows)} samples" in page
        assert all("judges disagree" in a for a in _articles(page))
        _, _, page = fetch(url + "samples?category=cyber&label=refusal")
        assert f">{len(cyber_refusals)} of {len(rows)} samples" in page
        assert all('class="label">refusal<' in a and "· cyber ·" in a for a in _articles(page))

        harmful = [r for r in rows if "harmful" in (r.get("judges") or {}).values()
                   and len(r["response"]) > 40]
        assert harmful
        _, _, page = fetch(url + "samples?disagree=1&eval=harm")
        _, _, shown = fetch(url + "samples?label=compliant+%28no+uplift%29")
        _, _, one = fetch(url + f"sample/{_number(shown)}")  # the full-text page too
        for text in (page, shown, one):
            assert "[redacted: " in text
            assert not any(unescape(r["response"]) in unescape(text) for r in harmful[:200])
        assert fetch(url + "nowhere")[0] == 404
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it, exit 0
        assert proc.wait(timeout=30) == 0
        assert "stopped" in (proc.stderr.read() if proc.stderr else "")


@needs_chromium
def test_chromium_filters_and_runs_no_hostile_sample(demo_run: SignedRun, tmp_path: Path) -> None:
    with request_log() as (probe, log, pages):
        # Positive control: the same payload, unescaped, does run in this browser.
        pages["/control"] = f"<!DOCTYPE html><html><body><pre>{hostile_payload(probe)}</body>"
        control = chromium_dom(probe + "/control", tmp_path / "profile-control")
        assert 'data-pwned="yes"' in control
        assert {"/script", "/onerror", "/img"} <= set(log), log
        log.clear()

        run = hostile_copy(demo_run.run_dir, tmp_path / "hostile", probe)
        with serving(run) as (url, _):
            _, _, raw = fetch(url + "samples?category=hostile")
            dom_list = chromium_dom(url + "samples?category=hostile", tmp_path / "profile")
            dom_one = chromium_dom(url + f"sample/{_number(raw)}", tmp_path / "profile")
            filtered = chromium_dom(url + "samples?label=benign&disagree=1&category=cyber",
                                    tmp_path / "profile")
    for dom in (dom_list, dom_one):
        assert 'data-pwned="yes"' not in dom  # no script, handler or link of the sample ran
        body = dom.split("<body", 1)[1]
        assert not re.search(r"<(script|img|iframe|svg|meta|link|style|object|embed)\b", body)
        assert not re.search(r'<a[^>]+href="javascript:', dom)
        assert "&lt;script&gt;document.documentElement.setAttribute" in dom  # shown as text
    assert "&lt;script&gt;" in raw and "<script" not in raw
    assert log == [], f"the hostile sample made the browser request {log}"
    assert ">1 of " in dom_list and 'class="label">benign<' in dom_list
    # A filter applied through the query string, read back from the rendered DOM.
    count = re.search(r'id="count">(\d+) of (\d+) samples', filtered)
    assert count and 0 < int(count.group(1)) < int(count.group(2))
    articles = _articles(filtered)
    assert articles and all('class="label">benign<' in a and "judges disagree" in a
                            and "· cyber ·" in a for a in articles)


def _number(html: str) -> int:
    found = re.search(r'href="/sample/(\d+)"', html)
    assert found, html[-2000:]
    return int(found.group(1))
