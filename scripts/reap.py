"""Wait for every process of one `make up` run to exit; kill those still there after a grace period.

honcho stops the process groups it started, but a component may take a few seconds to shut down
(Airflow's API server, say) or may have moved to a group of its own. A process belongs to the
run if it inherited LIVESHOP_PLATFORM_RUN from scripts/up.sh, or if it is in one of the sessions
honcho started (processes that rename themselves with setproctitle lose their visible environment).

Usage: python scripts/reap.py [--terminate] RUN_ID GRACE_SECONDS [SESSION_ID ...]
       (--terminate: send TERM to them first, for a run whose launcher can no longer stop it)
       python scripts/reap.py --sessions-of PID   (prints the sessions PID's descendants lead)
"""

from __future__ import annotations

import os
import sys
import time

import psutil


def platform_processes(run_id: str, sessions: set[int]) -> list[psutil.Process]:
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for process in psutil.process_iter():
        if process.pid in spared:
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(process.pid) in sessions or process.environ().get("LIVESHOP_PLATFORM_RUN") == run_id:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, ProcessLookupError):
            continue
    return found


def sessions_of(pid: int) -> set[int]:
    """Sessions led by descendants of `pid` (honcho starts each Procfile process in a new one)."""
    found = set()
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if os.getsid(child.pid) == child.pid:
                found.add(child.pid)
        except ProcessLookupError:
            continue
    return found


def main(run_id: str, grace_seconds: float, sessions: set[int], *, terminate: bool = False) -> int:
    deadline = time.monotonic() + grace_seconds
    if terminate:
        for process in platform_processes(run_id, sessions):
            try:
                process.terminate()
            except psutil.NoSuchProcess:
                continue
    announced = False
    while remaining := platform_processes(run_id, sessions):
        if not announced:
            print(f"waiting for {len(remaining)} processes to stop", file=sys.stderr)
            announced = True
        if time.monotonic() >= deadline:
            names = ", ".join(f"{p.pid} {p.name()}" for p in remaining)
            print(f"killing processes that did not stop within {grace_seconds:g}s: {names}", file=sys.stderr)
            for process in remaining:
                process.kill()
            psutil.wait_procs(remaining, timeout=5)
            break
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--sessions-of":
        print(" ".join(map(str, sorted(sessions_of(int(sys.argv[2]))))))
        sys.exit(0)
    args = sys.argv[1:]
    terminate = args[:1] == ["--terminate"]
    if terminate:
        args = args[1:]
    sys.exit(main(args[0], float(args[1]), {int(a) for a in args[2:]}, terminate=terminate))
