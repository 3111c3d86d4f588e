"""GeometryJobs: the portal process's runner of geometry jobs (generation, meshing, checks).

Why it exists: gmsh cannot run in a request thread (DESIGN.md), so portal.services.geometries
hands each job to this runner and answers 202 at once. A pool thread starts
``python -m portal.geometry_worker`` (one JSON request on stdin, one result on stdout),
waits for it, and records the outcome on the GeometryVersion row
(`geometries.record_result`): status generated / meshed, or failed with the error.

It lives in the one process that hosts the run agent (portal.agent_host starts it with the
host), because a job's bookkeeping is in memory: at start, versions left "generating" or
"meshing" by a process that died are marked failed ("interrupted"), so nothing waits for
them forever. Tests start one without an agent (`start_jobs(app)`) and wait with
`wait(version_id)` / `wait_all()`.

Example::

    jobs = start_jobs(app)                       # app.extensions["weldsim_geometry_jobs"]
    version = geometries.create_parametric(session, user, pid, params=horn, storage_root=root, jobs=jobs)
    jobs.wait(version.id, timeout=120)
"""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from flask import Flask

from weldsim_hpc.job_process import run_job

from .extensions import db
from .services import geometries

log = logging.getLogger("weldsim.portal.geometry")

EXTENSION = "weldsim_geometry_jobs"
WORKER_COMMAND = (sys.executable, "-m", "portal.geometry_worker")
JOB_TIMEOUT_S = 1800.0


def run_worker(request: dict[str, Any], *, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    """Run one job in a geometry_worker process; its result dict ({"ok": false, "error"} on failure)."""
    outcome = run_job(WORKER_COMMAND, request, timeout_s=timeout_s)
    if outcome.result is not None:
        return outcome.result
    return {"ok": False, "error": f"the geometry job died ({outcome.why_no_result()})"}


class GeometryJobs:
    """A small pool of geometry jobs for one app; see the module docstring."""

    def __init__(self, app: Flask, *, max_workers: int = 2, timeout_s: float = JOB_TIMEOUT_S):
        self.app = app
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="weldsim-geometry")
        self._futures: dict[int, Future] = {}
        self._guard = threading.Lock()
        self._stopped = False

    def start(self) -> GeometryJobs:
        """Fail the versions an earlier process left mid-job, then accept jobs."""
        with self.app.app_context():
            try:
                failed = geometries.fail_interrupted(db.session)
            finally:
                db.session.remove()
        if failed:
            log.warning("geometry versions %s were mid-job when the portal stopped: marked failed", failed)
        self.app.extensions[EXTENSION] = self
        return self

    def submit(self, version_id: int, request: dict[str, Any]) -> None:
        """Run `request` (see portal.geometry_worker) for the version, in the background."""
        with self._guard:
            if self._stopped:
                raise RuntimeError("the geometry job runner is stopped")
            future = self._pool.submit(self._run, version_id, request)
            self._futures[version_id] = future

    def _run(self, version_id: int, request: dict[str, Any]) -> None:
        try:
            result = run_worker(request, timeout_s=self.timeout_s)
        except Exception as exc:  # the row must not stay generating/meshing forever
            log.exception("geometry version %s: the job could not run", version_id)
            result = {"ok": False, "error": f"the geometry job could not run: {exc}"}
        with self.app.app_context():
            try:
                geometries.record_result(db.session, version_id, request, result,
                                         storage_root=self.app.extensions["weldsim"].storage_root)
            except Exception:
                log.exception("geometry version %s: recording the job's result failed", version_id)
            finally:
                db.session.remove()

    def wait(self, version_id: int, timeout: float | None = None) -> bool:
        """Block until the version's latest job has been recorded; False on timeout."""
        with self._guard:
            future = self._futures.get(version_id)
        if future is None:
            return True
        done, _ = wait_futures([future], timeout=timeout)
        return bool(done)

    def wait_all(self, timeout: float | None = None) -> bool:
        with self._guard:
            futures = list(self._futures.values())
        _, pending = wait_futures(futures, timeout=timeout)
        return not pending

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop accepting jobs; wait up to `timeout_s` for running ones to be recorded."""
        with self._guard:
            self._stopped = True
        self.wait_all(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.app.extensions.get(EXTENSION) is self:
            del self.app.extensions[EXTENSION]


def jobs_of(app: Flask) -> GeometryJobs | None:
    """The app's started runner, or None when this process runs no geometry jobs."""
    return app.extensions.get(EXTENSION)


def start_jobs(app: Flask, **options: Any) -> GeometryJobs:
    """The app's runner, started now if it has none (see GeometryJobs)."""
    return jobs_of(app) or GeometryJobs(app, **options).start()
