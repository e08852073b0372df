"""Repeated fault-injection trials, for the numbers in reports: per fault type, runs tried and
runs that ended with exactly the right output (all chunk files byte-identical to an uninterrupted
run, marked complete, lock released).

    python scripts/fault_trials.py [--trials 10] [--seed 1]

Fault types: kill9 (SIGKILL after a random number of blocks, or during start-up, then one
resume), sigterm (SIGTERM likewise; exit code 4 required, then one resume), concurrent (two runs
started together: one exit 0, one exit 3), flip (a random byte of a random chunk flipped; verify
must name it; a rerun repairs), safety (a random reproduction of issue 11's data-safety and
hostile-input attacks: refused, nothing outside the output touched).  Uses the helpers of
tests/test_reliability.py.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_reliability as t  # noqa: E402

from pipeline.runner import runconfig  # noqa: E402
from pipeline.storage import ledger


def right(out: Path, ref: dict) -> bool:
    try:
        t.assert_complete_and_identical(out, ref)
        return True
    except AssertionError as e:
        print("   WRONG:", str(e)[:200])
        return False


def fresh(root: Path) -> Path:
    out = root / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(ledger.sidecar(out), ignore_errors=True)
    return out


def resume(cfg: Path) -> int:
    return subprocess.run([sys.executable, "-m", "pipeline", "run", "-q", str(cfg)], capture_output=True).returncode


def trial_signal(root, cfg, ref, rng, sig) -> bool:
    out = fresh(root)
    proc = t.start(cfg)
    k = rng.randint(0, 120)
    if k == 0:
        time.sleep(rng.uniform(0.2, 3.0))
    elif not t.wait_until(lambda: t.n_done(out) >= k, proc):
        k = -1
    time.sleep(rng.uniform(0, 0.03))
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.communicate(timeout=120)
    if sig == signal.SIGTERM and proc.returncode == -signal.SIGTERM and not out.exists():
        pass  # arrived during interpreter start-up, before the handler: nothing written (documented)
    elif sig == signal.SIGTERM and proc.returncode not in (0, 4):
        print("   sigterm exit code", proc.returncode, "output exists:", out.exists())
        return False
    t.assert_recorded_blocks_are_right(out, ref)
    return resume(cfg) == 0 and right(out, ref)


def trial_concurrent(root, cfg, ref, rng) -> bool:
    out = fresh(root)
    procs = t.start_together(cfg)
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    if codes != [0, 3]:
        print("   exit codes", codes, [o[0][-200:] + o[1][-300:] for o in outs])
        if codes == [0, 0] and sum("up to date" in o[0] for o in outs) == 1:
            print("   (not concurrent: the second started after the first had finished)")
        return False
    return right(out, ref)


def trial_flip(root, cfg, ref, rng) -> bool:
    from typer.testing import CliRunner

    from pipeline.cli.main import app

    out = fresh(root)
    runconfig.run(cfg)
    files = sorted(p for p in (out / "result" / "c").rglob("*") if p.is_file())
    victim = rng.choice(files)
    data = bytearray(victim.read_bytes())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    victim.write_bytes(bytes(data))
    key = "result/c/" + "/".join(victim.relative_to(out / "result" / "c").parts)
    res = CliRunner().invoke(app, ["verify", str(out)])
    if res.exit_code != 1 or f"damaged {key}" not in res.output:
        print("   verify missed", key, res.output[:300])
        return False
    return runconfig.run(cfg).computed == 1 and right(out, ref)


#: The data-safety and hostile-input reproductions of issue 11 (planted metadata paths, sidecar
#: symlinks and look-alike names, symlinked chunk folders, planted cache files, symlinked temp
#: files, hostile shapes under a memory limit, the error-hygiene corpus): one picked at random per
#: trial, run in a fresh pytest process; "exactly right" means the attack was refused and nothing
#: outside the output was touched (the test's own assertions).
SAFETY_TESTS = ("tests/test_safety.py", "tests/test_hostile.py")


def _safety_cases() -> list[str]:
    top = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *SAFETY_TESTS],
        cwd=top, capture_output=True, text=True,
    ).stdout
    return [line for line in out.splitlines() if "::" in line]


def trial_safety(cases: list[str], rng) -> bool:
    case = rng.choice(cases)
    top = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", case], cwd=top, capture_output=True, text=True)
    if res.returncode != 0:
        print("   FAILED", case, res.stdout[-300:])
    return res.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    refroot = Path(tempfile.mkdtemp(prefix="faults-ref-"))
    t.make_inputs(refroot)
    runconfig.run(t.write_config(refroot, "ref.zarr"))
    ref = t.chunk_bytes(refroot / "ref.zarr")
    root = Path(tempfile.mkdtemp(prefix="faults-"))
    (root / "in.zarr").symlink_to(refroot / "in.zarr")
    cfg = t.write_config(root, "out.zarr")
    kinds = {
        "kill9": lambda: trial_signal(root, cfg, ref, rng, signal.SIGKILL),
        "sigterm": lambda: trial_signal(root, cfg, ref, rng, signal.SIGTERM),
        "concurrent": lambda: trial_concurrent(root, cfg, ref, rng),
        "flip": lambda: trial_flip(root, cfg, ref, rng),
    }
    if not args.only or "safety" in args.only:
        cases = _safety_cases()
        kinds["safety"] = lambda: trial_safety(cases, rng)
    for name, fn in kinds.items():
        if args.only and name not in args.only:
            continue
        ok = sum(bool(fn()) for _ in range(args.trials))
        print(f"{name:10s} tried {args.trials:3d}  exactly right {ok:3d}", flush=True)


if __name__ == "__main__":
    main()
