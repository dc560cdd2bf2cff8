"""Study processes: workers end with their parent, and the counts say who computed what."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml
from test_study import TINY

from ptmdd_helpers import study
from ptmdd_helpers.study.batch import describe_counts

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has ended; only its parent has not reaped it
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_workers_end_when_the_study_is_killed(tmp_path):
    """SIGKILL of the parent: its spawned workers notice within seconds and exit."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing
        from ptmdd_helpers.study.workers import start_worker

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=start_worker,
                                       initargs=(1, os.getpid()))
            futures = [pool.submit(time.sleep, 600) for _ in range(2)]
            time.sleep(0.5)
            print("ready", flush=True)
            time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env=ENV)
    try:
        assert parent.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            workers = [p for p in _children(parent.pid)
                       if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]
            time.sleep(0.2)
        assert len(workers) == 2, workers
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived the killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_two_identical_studies_on_one_store_count_each_task_once(tmp_path):
    """Both batches compute 05's tasks; between them each task is computed exactly once."""
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}",
             f"figures_dir={tmp_path / 'figures'}", f"runs_dir={tmp_path / 'runs'}"]
    code = textwrap.dedent(f"""
        import json, sys
        from ptmdd_helpers import study
        result = study.run_study({str(profile)!r}, only=["05_alpha"], overrides={roots!r},
                                 notebooks=False, verbose=False)
        print(json.dumps(sorted(s for s, _ in result["results"].values())))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=ENV) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    import json

    statuses = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    computed = sum(s.count("computed") for s in statuses)
    # 1 pool member + 2 distillations + 2 evaluations: each computed by exactly one process;
    # a process that found a task done by the other says "found", not "computed"
    assert computed == 5, statuses
    assert all(set(s) <= {"computed", "found"} for s in statuses), statuses
    third = study.run_study(profile, only=["05_alpha"], overrides=roots, notebooks=False,
                            verbose=False)
    assert third["results"] == {}
    assert third["counts"] == "0 computed here, 0 by another process meanwhile, 5 already stored"


def test_describe_counts_names_every_status():
    results = {"a": ("computed", ""), "b": ("found", ""), "c": ("diverged", "x"),
               "d": ("skipped", "y")}
    assert describe_counts(results, 10) == (
        "1 computed here, 1 by another process meanwhile, 6 already stored, 1 diverged, "
        "1 skipped")
