"""`python -m weldsim_hpc.prepare_job`: prepare one run directory in a process of its own.

Why a process: gmsh 4.8 cannot run off the main thread (DESIGN.md, "Processes, threads
and MPI"), so a server (the portal's request or worker threads) must not call
`prepare_run` itself. It starts this module instead, writes ONE request line of JSON to
its stdin and keeps stdin open; the result is one line of JSON on stdout::

    request  {"case": {...CaseSpec data...}, "runs_root": "/abs/runs", "run_id": "k3v9x0q2m7ab",
              "ranks": 2, "backend": null, "base_dir": "/abs/storage"}
    result   {"ok": true, "run_id": "k3v9x0q2m7ab", "backend": "fenicsx", "ranks": 2}
             {"ok": false, "kind": "invalid_case", "problems": [["materials.tab", "unknown …"], …]}
             {"ok": false, "kind": "error", "error": "GeometryError: …"}

Exit codes: 0 prepared, 2 invalid case, 1 any other failure (nothing is left behind:
`prepare_run` builds in a hidden directory). `backend` null keeps the case's
solver.backend; either is resolved with `select_backend` as `weldsim submit` does.
`base_dir` anchors relative mesh-file paths (the portal's storage root).

The job dies with its parent: when stdin reaches end-of-file before the job is done (the
server was killed), it stops itself with SIGTERM → SystemExit, so `prepare_run` removes
its half-built directory. gmsh's own output goes to stderr; stdout carries only the
result. Never imports mpi4py or dolfinx.

Example (what the portal does)::

    proc = subprocess.Popen([sys.executable, "-m", "weldsim_hpc.prepare_job"], stdin=PIPE, stdout=PIPE)
    proc.stdin.write(json.dumps(request).encode() + b"\\n"); proc.stdin.flush()
    result = json.loads(proc.stdout.read())
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

EXIT_PREPARED, EXIT_ERROR, EXIT_INVALID = 0, 1, 2


def prepare_request(request: dict[str, Any]) -> dict[str, Any]:
    """Validate the case, choose its backend and build the run directory; the result dict.

    Raises CaseValidationError for an invalid case; other WeldSimErrors for geometry or
    meshing failures (see `prepare_run`).
    """
    from .backends.registry import select_backend
    from .case_io import parse_case
    from .prepare import prepare_run

    base_dir = request.get("base_dir")
    case = parse_case(request["case"], base_dir=Path(base_dir) if base_dir else None)
    chosen = select_backend(request.get("backend") or case.solver.backend, case.analysis)
    case = case.model_copy(update={"solver": case.solver.model_copy(update={"backend": chosen})})
    paths = prepare_run(case, request["runs_root"], run_id=request.get("run_id"), ranks=request.get("ranks"))
    return {"ok": True, "run_id": paths.run_id, "backend": chosen,
            "ranks": request.get("ranks") or case.solver.ranks}


def main() -> int:
    from .errors import CaseValidationError, WeldSimError
    from .job_process import open_job, watch_parent

    reply, stdin = open_job()
    line = stdin.readline()
    try:
        request = json.loads(line)
        if not isinstance(request, dict) or not isinstance(request.get("case"), dict) or not request.get("runs_root"):
            raise ValueError("expected an object with 'case' (an object) and 'runs_root'")
    except ValueError as exc:
        return reply({"ok": False, "kind": "error", "error": f"bad request: {exc}"}, EXIT_ERROR)
    watch_parent(stdin)
    try:
        return reply(prepare_request(request), EXIT_PREPARED)
    except CaseValidationError as exc:
        return reply({"ok": False, "kind": "invalid_case", "problems": [list(p) for p in exc.errors]}, EXIT_INVALID)
    except WeldSimError as exc:
        return reply({"ok": False, "kind": "error", "error": f"{type(exc).__name__}: {exc}"}, EXIT_ERROR)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return reply({"ok": False, "kind": "error", "error": f"{type(exc).__name__}: {exc}"}, EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
