"""The process side of a one-shot job a server starts (`python -m weldsim_hpc.prepare_job`,
`python -m portal.geometry_worker`): one JSON request line on stdin, one JSON result
line on stdout, and death with the parent.

Why a shared module: both jobs run gmsh, which needs a main thread and prints to fd 1, so
both must move fd 1 to stderr before anything prints and keep a private duplicate as the
result channel; and both must stop (SIGTERM → SystemExit, so clean-up code runs) when the
server that started them dies, noticed as end-of-file on stdin.

`run_job` is the server's side: start the job, send the request, read the result.

Example::

    outcome = run_job([sys.executable, "-m", "weldsim_hpc.prepare_job"], request, timeout_s=600)
    outcome.result or outcome.why_no_result()

    reply, stdin = open_job()               # the job: first thing in main()
    request = json.loads(stdin.readline())
    watch_parent(stdin)
    return reply({"ok": True}, 0)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

Reply = Callable[[dict[str, Any], int], int]


def open_job() -> tuple[Reply, BinaryIO]:
    """Move stdout to stderr (gmsh prints to fd 1), make SIGTERM raise SystemExit, and
    return (reply(result, exit_code) → exit_code, which writes the one result line; stdin)."""
    result_fd = os.dup(1)  # the result channel; fd 1 itself goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, _terminate)

    def reply(result: dict[str, Any], code: int) -> int:
        with os.fdopen(result_fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(result) + "\n")
        return code

    return reply, sys.stdin.buffer


def watch_parent(stdin: BinaryIO) -> None:
    """In a daemon thread: read stdin to its end (the parent closed it or died), then
    SIGTERM this process."""
    threading.Thread(target=_stop_when_parent_goes, args=(stdin,), name="parent-watch", daemon=True).start()


def _stop_when_parent_goes(stdin: BinaryIO) -> None:
    # os.read on the descriptor, not stdin.read: a daemon thread blocked inside the buffered
    # reader holds its lock, and the interpreter aborts (SIGABRT) when it exits meanwhile
    try:
        fd = stdin.fileno()
        while os.read(fd, 65536):
            pass
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# --- the server side ---------------------------------------------------------------------------
@dataclass(frozen=True)
class JobOutcome:
    """What a job process gave: its result line (None if it died without one), its exit
    code, the last lines of its stderr, and whether it was killed for taking too long."""

    result: dict[str, Any] | None
    exit_code: int
    stderr_tail: tuple[str, ...]
    timed_out: bool

    def why_no_result(self) -> str:
        """'exit code 1: <stderr tail>' or 'took longer than …' for a job without a result."""
        reason = "it took too long and was killed" if self.timed_out else f"exit code {self.exit_code}"
        return reason + (": " + " | ".join(self.stderr_tail) if self.stderr_tail else "")


def run_job(argv: Sequence[str], request: dict[str, Any], *, timeout_s: float,
            started: Callable[[subprocess.Popen], None] | None = None) -> JobOutcome:
    """Start `argv`, send the request line, keep stdin open until the result is read (so the
    job lives while we wait), kill it after `timeout_s`. `started(proc)` lets a caller
    terminate it (a cancel)."""
    killed = threading.Event()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        if started is not None:
            started(proc)

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        output = b""
        try:
            proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
            proc.stdin.flush()
            output = proc.stdout.read()
        except BrokenPipeError:  # it died before reading the request: its stderr says why
            pass
        except BaseException:
            proc.kill()
            raise
        finally:
            code = proc.wait()
            timer.cancel()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            result = json.loads(output.decode("utf-8").strip().splitlines()[-1])
            tail: tuple[str, ...] = ()
        except (ValueError, IndexError):
            result = None
            errors.seek(0)
            tail = tuple(errors.read().decode("utf-8", "replace").strip().splitlines()[-5:])
    return JobOutcome(result if isinstance(result, dict) else None, code, tail, killed.is_set())
