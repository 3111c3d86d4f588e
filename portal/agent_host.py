"""AgentHost: the portal process's agent, reconciler, preparers and progress readers.

Why one host per process, and one such process: the weldsim_hpc Agent holds the runs
root's agent lock, the dask cluster and the futures of running attempts; the progress
hub holds the only reader of each progress file; the reconciler is the only writer of
run state into the database. So exactly one process may host them — ``weldsim portal``
(werkzeug, threaded) or, in production::

    flask --app portal db upgrade
    gunicorn -w 1 -k gthread --threads 64 -b 127.0.0.1:5000 'portal.agent_host:create_hosted_app()'

(-w 1: a second worker would fail to take the agent lock and could not serve runs.)

What it does:

* `dispatch` (a submission): a worker thread starts ``python -m weldsim_hpc.prepare_job``
  (gmsh needs a main thread: never in a request thread), then hands the prepared run to
  the agent. A failed preparation fails the row, with the problems as its reason.
* `cancel_run`: stops a preparation, or asks the agent to cancel; returns once final.
* the reconciler: once at start and then every `reconcile_s` seconds, every unfinished
  Run row is brought up to date from its run directory (`services.run_sync.reconcile`).
  After a restart the agent first adopts live jobs (executor.json, run.lock); the
  reconciler then copies what happened meanwhile into the rows. Idempotent.
* `hub`: the `ProgressHub` the WebSocket streams read from.
* `workflows`: the `WorkflowRunner` that walks workflows (portal.workflow_runner).
* `geometry_jobs`: the `GeometryJobs` that generate and mesh geometry versions out of
  process (portal.geometry_jobs), as app.extensions["weldsim_geometry_jobs"].
* the agent served to the `weldsim` CLI (`weldsim status|watch|logs|cancel|submit
  --runs-root <runs root>`), as `weldsim agent` serves it; `weldsim agent stop` is refused.

`stop()` (SIGTERM, Ctrl-C) waits for running preparations to be handed over, stops
following and releases the lock; runs go on, and the next start adopts them.

Example::

    host = start_host(app)            # app from create_app(); host.agent is running
    host.dispatch(run_id, case_doc, executor="local", ntasks=2, resources={})
    host.stop()
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.executors.agent import Agent, AgentError
from weldsim_hpc.executors.base import tail_logs
from weldsim_hpc.executors.config import ExecutorConfig, load_config
from weldsim_hpc.executors.record import RecordError, read_record
from weldsim_hpc.job_process import run_job
from weldsim_hpc.run_paths import RunPaths
from weldsim_hpc.states import RunState

from .extensions import db
from .models import Run
from .progress_hub import ProgressHub
from .services import run_sync

log = logging.getLogger("weldsim.portal.host")

EXTENSION = "weldsim_agent_host"
PREPARE_TIMEOUT_S = 1800.0
PREPARE_COMMAND = (sys.executable, "-m", "weldsim_hpc.prepare_job")


class PrepareFailed(WeldSimError):
    """The run directory could not be prepared; the message is the row's reason."""


@dataclass
class _Preparation:
    run_id: str
    proc: subprocess.Popen | None = None
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)


def run_prepare_job(request: dict[str, Any], *, timeout_s: float = PREPARE_TIMEOUT_S,
                    started=None) -> dict[str, Any]:
    """Prepare a run directory in a `weldsim_hpc.prepare_job` process; its result dict.

    `started(proc)` is called once the process runs (so a cancel can terminate it). The
    job reads the request from stdin and stops itself if stdin closes early (this
    process died). PrepareFailed carries the problems or the error, and the tail of the
    job's stderr when it died without a result.
    """
    outcome = run_job(PREPARE_COMMAND, request, timeout_s=timeout_s, started=started)
    result = outcome.result
    if result is None:
        raise PrepareFailed(f"preparing the run directory failed ({outcome.why_no_result()})")
    if not result.get("ok"):
        if result.get("kind") == "invalid_case":
            problems = "; ".join(f"{p}: {m}" if p else m for p, m in result.get("problems", []))
            raise PrepareFailed(f"invalid case: {problems}")
        raise PrepareFailed(f"preparing the run directory failed: {result.get('error')}")
    return result


class AgentHost:
    """See the module docstring; `start_host(app)` builds and starts one."""

    def __init__(self, app: Flask, *, reconcile_s: float = 2.0, hub_poll_s: float = 0.2,
                 max_preparations: int = 2, executor_overrides: dict[str, Any] | None = None,
                 workflow_options: dict[str, Any] | None = None):
        settings = app.extensions["weldsim"]
        self.app = app
        self.config: ExecutorConfig = load_config({"runs_root": settings.runs_root, "executor": settings.executor,
                                                   **(executor_overrides or {})})
        self.storage_root = settings.storage_root
        self.reconcile_s = reconcile_s
        self._workflow_options = dict(workflow_options or {})  # WorkflowRunner's poll_s, max_workflows
        self.hub = hub_of(app)
        self.hub.poll_s = hub_poll_s
        self.agent: Agent | None = None
        self._max_preparations = max_preparations
        self._pool: ThreadPoolExecutor | None = None
        self._preparing: dict[str, _Preparation] = {}
        self._futures: set[Future] = set()
        self._guard = threading.Lock()
        self._handover = threading.Lock()  # orders the reconciler's hand-over and cancelling unsubmitted runs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.workflows = None  # the WorkflowRunner (portal.workflow_runner), while started
        self.geometry_jobs = None  # the GeometryJobs (portal.geometry_jobs), while started
        self._rpc = None  # the AgentServer the weldsim CLI talks to, while started

    # --- life cycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.agent is not None

    def start(self) -> AgentHost:
        """Take the agent lock (AgentRunning if another process has it), adopt the runs,
        sync the rows once, then keep reconciling in the background."""
        if self.agent is not None:
            return self
        self.config.runs_root.mkdir(parents=True, exist_ok=True)
        self.agent = Agent(self.config).start()
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._max_preparations, thread_name_prefix="weldsim-prepare")
        self.hub.start()
        try:
            self.reconcile()
        except Exception:
            log.exception("the start-up reconciliation failed; the reconciler retries")
        self._thread = threading.Thread(target=self._loop, name="weldsim-reconciler", daemon=True)
        self._thread.start()
        from .geometry_jobs import start_jobs

        self.geometry_jobs = start_jobs(self.app)
        self.app.extensions[EXTENSION] = self  # from now on the API can submit and cancel
        from .workflow_runner import WorkflowRunner

        self.workflows = WorkflowRunner(self.app, self, **self._workflow_options).start()
        self._serve_cli()
        log.info("agent host started: runs root %s, executor %s", self.config.runs_root, self.config.executor)
        return self

    def _serve_cli(self) -> None:
        """Serve the agent to the `weldsim` CLI too (submit, cancel, logs, agent status), as
        `weldsim agent` would: <runs root>/.agent/agent.json, 127.0.0.1, HMAC key. A run
        submitted that way runs, but has no row in the portal's database."""
        from weldsim_hpc.executors.rpc import AgentServer

        self._rpc = AgentServer(self.agent, hosted_by="the portal")
        self._rpc.write_agent_file()
        threading.Thread(target=self._rpc.serve_forever, name="weldsim-agent-rpc", daemon=True).start()

    def stop(self, timeout_s: float = 120.0) -> None:
        """Finish running preparations (hand them over), stop the reconciler, the readers
        and the agent. Runs keep running; the next start adopts them."""
        if self.agent is None:
            return
        if self.app.extensions.get(EXTENSION) is self:
            del self.app.extensions[EXTENSION]
        if self.workflows is not None:  # workflows stay running: the next start resumes them
            self.workflows.stop()
            self.workflows = None
        if self.geometry_jobs is not None:
            self.geometry_jobs.stop()
            self.geometry_jobs = None
        self._stop.set()
        with self._guard:
            futures = set(self._futures)
        if futures:
            wait_futures(futures, timeout=timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.hub.stop()
        if self._rpc is not None:
            self._rpc.stop()
            self._rpc.remove_agent_file()
            self._rpc = None
        self.agent.close()
        self.agent = None
        log.info("agent host stopped; unfinished runs continue and are adopted at the next start")

    # --- submissions ---------------------------------------------------------------------
    def dispatch(self, run_id: str, case_document: dict[str, Any], *, executor: str, ntasks: int,
                 resources: dict[str, Any]) -> None:
        """Prepare the run directory in the background, then give the run to the agent."""
        if self.agent is None or self._pool is None:
            raise AgentError("the agent is not running in this portal process")
        request = {"case": case_document, "runs_root": str(self.config.runs_root), "run_id": run_id,
                   "ranks": ntasks, "base_dir": str(self.storage_root)}
        prep = _Preparation(run_id)
        with self._guard:
            self._preparing[run_id] = prep
            future = self._pool.submit(self._prepare_and_hand_over, prep, request, executor,
                                       {**resources, "ntasks": ntasks})
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._guard:
            self._futures.discard(future)

    def is_preparing(self, run_id: str) -> bool:
        with self._guard:
            return run_id in self._preparing

    def wait_prepared(self, run_id: str, timeout: float) -> bool:
        """Block until the run's preparation (if any) has ended; False on timeout."""
        with self._guard:
            prep = self._preparing.get(run_id)
        return True if prep is None else prep.done.wait(timeout)

    def _prepare_and_hand_over(self, prep: _Preparation, request: dict[str, Any], executor: str,
                               resources: dict[str, Any]) -> None:
        run_id = prep.run_id
        try:
            def started(proc: subprocess.Popen) -> None:
                prep.proc = proc
                if prep.cancelled:
                    proc.terminate()

            try:
                run_prepare_job(request, started=started)
            except PrepareFailed as exc:
                state = RunState.CANCELLED if prep.cancelled else RunState.FAILED
                self._end(run_id, state, "cancelled on request" if prep.cancelled else str(exc))
                return
            if prep.cancelled:
                self._end(run_id, RunState.CANCELLED, "cancelled on request")
                return
            self._submit(run_id, executor, resources)
        except Exception as exc:  # the row must not stay queued forever
            log.exception("run %s: preparing or starting it failed", run_id)
            self._end(run_id, RunState.FAILED, f"could not start the run: {exc}")
        finally:
            with self._guard:
                self._preparing.pop(run_id, None)
            prep.done.set()
        self.sync(run_id)

    def _submit(self, run_id: str, executor: str, resources: dict[str, Any]) -> None:
        try:
            self.agent.submit(run_id, executor, resources)
        except AgentError:
            if not self._submitted(run_id):
                raise
            # else: submitted already (a concurrent reconcile pass got there first): fine

    def _submitted(self, run_id: str) -> bool:
        try:
            read_record(RunPaths.for_id(self.config.runs_root, run_id))
        except RecordError:
            return False
        return True

    def _hand_over(self, run_id: str, run: Run) -> None:
        """The reconciler's hand-over of a prepared run the agent never got (unless it was
        cancelled meanwhile: the hand-over lock orders it with `cancel_run`)."""
        with self._handover:
            if self._row_final(run_id):
                return
            log.warning("run %s: prepared but never handed to the agent; handing it over now", run_id)
            try:
                self._submit(run_id, run.executor, {"ntasks": run.ntasks})
            except WeldSimError as exc:
                self._end(run_id, RunState.FAILED, f"could not start the run: {exc}")

    def _end(self, run_id: str, state: RunState, reason: str) -> None:
        with self.app.app_context():
            try:
                run_sync.end_run(db.session, run_id, state, reason)
            finally:
                db.session.remove()

    # --- cancel, logs ----------------------------------------------------------------------
    def cancel_run(self, run_id: str) -> None:
        """Cancel a run (preparing, queued or running); return once its row is final."""
        with self._guard:
            prep = self._preparing.get(run_id)
            if prep is not None:
                prep.cancelled = True
                if prep.proc is not None and prep.proc.poll() is None:
                    prep.proc.terminate()
        if prep is not None:
            prep.done.wait(60)
            if self.is_preparing(run_id):
                raise AgentError(f"run {run_id}: its preparation did not stop")
            if prep.done.is_set() and self._row_final(run_id):
                return
        if self.agent is None:
            raise AgentError("the agent is not running in this portal process")
        with self._handover:
            if not self._submitted(run_id):  # never reached the agent: nothing runs
                self._end(run_id, RunState.CANCELLED, "cancelled on request")
                return
        self.agent.cancel(run_id)
        self.sync(run_id)

    def resume_run(self, run_id: str) -> None:
        """A new attempt of an ended, resumable run (from its checkpoint); the row follows."""
        if self.agent is None:
            raise AgentError("the agent is not running in this portal process")
        with self._handover:
            self.agent.submit(run_id, resume=True)
        self.sync(run_id)

    def _row_final(self, run_id: str) -> bool:
        with self.app.app_context():
            try:
                run = db.session.get(Run, run_id)
                return run is None or RunState(run.state).is_terminal
            finally:
                db.session.remove()

    def logs(self, run_id: str, lines: int = 200) -> str:
        paths = RunPaths.for_id(self.config.runs_root, run_id)
        return self.agent.logs(run_id, lines) if self.agent is not None else tail_logs(paths, lines)

    # --- reconciliation ----------------------------------------------------------------------
    def sync(self, run_id: str) -> bool:
        """Copy one run's directory into its rows now; True if they changed."""
        with self.app.app_context():
            try:
                return run_sync.sync_run(db.session, run_id, self.config.runs_root, progress=self.hub.peek,
                                         max_resubmissions=self.config.max_resubmissions)
            except Exception:
                log.exception("run %s: syncing it failed", run_id)
                return False
            finally:
                db.session.remove()

    def reconcile(self) -> list[str]:
        """One reconciliation pass over the unfinished rows; the run ids it changed."""
        with self.app.app_context():
            try:
                return run_sync.reconcile(db.session, self.config.runs_root, preparing=self.is_preparing,
                                          hand_over=self._hand_over, progress=self.hub.peek,
                                          max_resubmissions=self.config.max_resubmissions)
            finally:
                db.session.remove()

    def _loop(self) -> None:
        while not self._stop.wait(self.reconcile_s):
            try:
                self.reconcile()
            except Exception:
                log.exception("a reconciliation pass failed; the next one retries")


# --- the app side -----------------------------------------------------------------------------

HUB_EXTENSION = "weldsim_progress_hub"
_hub_guard = threading.Lock()


def hub_of(app: Flask) -> ProgressHub:
    """The app's ProgressHub (made on first use; its thread starts with `start()`)."""
    with _hub_guard:
        hub = app.extensions.get(HUB_EXTENSION)
        if hub is None:
            hub = app.extensions[HUB_EXTENSION] = ProgressHub(
                app.extensions["weldsim"].runs_root, unsubmitted=lambda run_id: _row_state(app, run_id))
        return hub


def _row_state(app: Flask, run_id: str) -> tuple[RunState, str | None] | None:
    """(state, reason) of a Run row (for runs that never reached the agent), or None."""
    with app.app_context():
        try:
            run = db.session.get(Run, run_id)
            return None if run is None else (RunState(run.state), run.reason)
        finally:
            db.session.remove()


def host_of(app: Flask) -> AgentHost | None:
    """The app's started AgentHost, or None when this process hosts no agent."""
    return app.extensions.get(EXTENSION)


def current_host() -> AgentHost | None:
    return host_of(current_app)


def start_host(app: Flask, **options: Any) -> AgentHost:
    """Start an AgentHost for `app` (the one already started, if any); see AgentHost."""
    return host_of(app) or AgentHost(app, **options).start()


def create_hosted_app(config: dict[str, Any] | None = None) -> Flask:
    """gunicorn's entry point: create_app() with the WebSocket routes, and the host started
    (stopped at interpreter exit). Run the migrations first (`flask --app portal db upgrade`)."""
    from . import create_app, ws

    app = create_app(config)
    ws.init_app(app)
    host = start_host(app)
    atexit.register(host.stop)
    return app
