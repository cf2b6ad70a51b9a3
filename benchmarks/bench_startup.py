"""Benchmark 6: import time of `certify --help` (no torch) and peak RSS of a ci-smoke audit.

`certify --help` runs in a fresh interpreter, side by side with `python -c pass`
and `python -c "import torch"` (what the CLI would cost if it imported torch
eagerly); the run also checks torch stayed unimported. The audit is
`certify audit builtin:tiny-chat --policy ci-smoke` in a fresh process, its peak
resident memory read from the kernel (wait4), beside the peak of a process that
only imports torch, transformers and peft and loads the model.

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import _common as common

HELP = ("import sys; from certify.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'certify --help imported torch'")
FLOOR = ("import sys; sys.path.insert(0, 'benchmarks'); import _common, torch, transformers, "
         "peft; _common.load_model(_common.tiny_chat())")


def run(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process; raises if it fails."""
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in ok:
        raise RuntimeError(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")
    proc.stderr.close()
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    opts = common.args(__doc__.splitlines()[0])
    load = os.getloadavg()[0]
    py = sys.executable
    times: dict[str, list[float]] = {"python": [], "certify --help": [], "import torch": []}
    commands = {"python": [py, "-c", "pass"], "certify --help": [py, "-c", HELP],
                "import torch": [py, "-c", "import torch"]}
    for _ in range(max(opts.repeats, 3)):
        for name, argv in commands.items():
            times[name].append(run(argv)[0])
    t = {k: common.median(v) for k, v in times.items()}
    with tempfile.TemporaryDirectory() as out:
        # Exit 1: the undefended demo model fails the gate, as it should.
        audit_s, audit_rss = run([py, "-m", "certify", "audit", "builtin:tiny-chat", "--policy",
                                  "ci-smoke", "--out", f"{out}/run", "--quiet", "--device",
                                  opts.device], ok=(1,))
    _, floor_rss = run([py, "-c", FLOOR])
    help_ratio = t["certify --help"] / t["import torch"]
    common.report(
        "startup_memory",
        f"`certify --help` {t['certify --help'] * 1e3:.0f} ms vs `import torch` "
        f"{t['import torch'] * 1e3:.0f} ms = {help_ratio:.2f}x (bare python "
        f"{t['python'] * 1e3:.0f} ms; torch not imported); ci-smoke audit ({audit_s:.0f}s) "
        f"peak RSS {audit_rss / 2**20:.0f} MiB vs {floor_rss / 2**20:.0f} MiB for importing "
        f"torch+transformers+peft and loading the model = {audit_rss / floor_rss:.2f}x",
        {"ratio": help_ratio, "seconds": t, "audit_s": audit_s, "audit_peak_rss": audit_rss,
         "floor_peak_rss": floor_rss, "rss_ratio": audit_rss / floor_rss},
        opts.json, load)


if __name__ == "__main__":
    main()
