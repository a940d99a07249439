"""One command as a whole process, measured from outside: wall time, peak RSS, CPU seconds.

Linux carries a process's peak RSS across fork and exec (the child starts with its parent's pages
counted), so a child forked straight from a benchmark that has grown to gigabytes (or rendered its
videos in-process) would report the benchmark's own peak instead of its own. Each command is
therefore started from a small, fresh launcher process, which reads the command's own figures with
``wait4`` and writes them to a file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

LAUNCHER = r"""
import json, os, subprocess, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
proc = subprocess.Popen(cmd)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
with open(report, "w") as f:
    json.dump({"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
               "rc": os.waitstatus_to_exitcode(status)}, f)
"""


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """``{"wall", "rss_mb", "cpu_s", "rc", "stdout", "stderr"}`` of one process, measured from outside."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as report,
    ):
        subprocess.run(
            [sys.executable, "-c", LAUNCHER, report.name, *cmd], stdout=out, stderr=err, env=env, check=False
        )
        measured = json.loads(Path(report.name).read_text() or '{"rc": -1}')
        out.seek(0), err.seek(0)
        return {**measured, "stdout": out.read(), "stderr": err.read()}
