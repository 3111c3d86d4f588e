"""weldsim_hpc.job_process: the one-request, one-result job protocol, with real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from weldsim_hpc.job_process import run_job

#: a job built on open_job/watch_parent: prints noise to fd 1 (as gmsh does), answers the request
ECHO_JOB = r"""
import json, os, sys, time
from weldsim_hpc.job_process import open_job, watch_parent
reply, stdin = open_job()
os.write(1, b"gmsh chatter on fd 1\n")
request = json.loads(stdin.readline())
watch_parent(stdin)
if request.get("sleep"):
    try:
        time.sleep(request["sleep"])
    except SystemExit as exc:
        sys.stderr.write(f"stopped with {exc.code}\n"); sys.stderr.flush(); raise
sys.exit(reply({"ok": True, "echo": request["x"]}, 0))
"""


def job(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def test_the_result_line_is_the_only_stdout_and_noise_goes_to_stderr():
    outcome = run_job(job(ECHO_JOB), {"x": [1, "two"]}, timeout_s=60)
    assert outcome.result == {"ok": True, "echo": [1, "two"]}
    assert outcome.exit_code == 0 and not outcome.timed_out and outcome.stderr_tail == ()


def test_a_job_that_dies_without_a_result_reports_its_stderr():
    outcome = run_job(job("import sys; sys.stderr.write('boom: no mesh\\n'); sys.exit(3)"), {}, timeout_s=60)
    assert outcome.result is None and outcome.exit_code == 3 and not outcome.timed_out
    assert outcome.stderr_tail == ("boom: no mesh",)
    assert outcome.why_no_result() == "exit code 3: boom: no mesh"


def test_a_job_over_its_time_is_killed():
    began = time.monotonic()
    outcome = run_job(job(ECHO_JOB), {"x": 1, "sleep": 60}, timeout_s=1.0)
    assert time.monotonic() - began < 30
    assert outcome.result is None and outcome.timed_out and outcome.exit_code == -9
    assert outcome.why_no_result().startswith("it took too long and was killed")


def test_the_job_stops_itself_when_its_parent_closes_stdin():
    proc = subprocess.Popen(job(ECHO_JOB), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b'{"x": 1, "sleep": 60}\n')
    proc.stdin.flush()
    time.sleep(1.0)
    proc.stdin.close()  # what the death of the server looks like to the job
    try:
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 128 + 15 and "stopped with 143" in err, (code, err)
