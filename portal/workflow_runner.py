"""WorkflowRunner: walks workflows through the portal's services, in the agent host's process.

Why here: a workflow's steps are the same jobs a user starts by hand — a geometry version
generated and meshed out of process (portal.services.geometries), a case and a run handed
to the agent (portal.services.cases, .runs) — so they need the one process that hosts the
agent (portal.agent_host). The AgentHost starts a runner and stops it; each workflow is
walked by one thread of a small pool (`weldsim_hpc.workflow.run_nodes`: topological order,
a failed node's dependants skipped).

Every transition is written to the Workflow row at once (services.workflows.save_progress):
node statuses, partial results (the geometry version or run a node waits for) and the
progress events /ws/workflows/<id> replays. So a portal restarted mid-workflow resumes it
(`start` picks up ``running`` workflows): finished nodes are kept, a node that was waiting
for a version or a run waits for the same one again.

Waiting is polling rows: a geometry version's `status` (written by the geometry jobs), a
run's `state` (written by the host's reconciler) — the rows are the truth either way.

Example::

    runner = WorkflowRunner(app, host).start()     # AgentHost.start does this
    runner.submit(workflow_id)                     # services.workflows.execute_workflow does this
    runner.cancel(workflow_id)                     # returns once the workflow has ended
    runner.stop()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from weldsim_hpc.case_checks import resolve_case_materials, resolve_case_sizes
from weldsim_hpc.case_io import parse_case
from weldsim_hpc.errors import CaseValidationError
from weldsim_hpc.states import RunState
from weldsim_hpc.workflow import (Node, NodeFailed, NodeState, NodeStatus, Stopped, Suspended,
                                  Workflow as Dag, parse_workflow, run_nodes)

from .extensions import db
from .models import BatchState, GeometryVersion, Run, SimulationCase, User, Workflow
from .services import workflows as service
from .services.errors import Conflict, DomainError
from .services.materials import custom_library, inline_custom_materials

log = logging.getLogger("weldsim.portal.workflows")

TERMINAL_TYPES = ("completed", "error")
GEOMETRY_TIMEOUT_S = 1800.0
RUN_TIMEOUT_S = 7 * 24 * 3600.0


class _Walk:
    """What one thread knows of the workflow it walks."""

    def __init__(self, workflow: Workflow):
        self.id = workflow.id
        self.project_id = workflow.project_id
        self.name = workflow.name
        execution = workflow.dag.get("execution") or {}
        self.user_id = execution.get("user_id")
        self.number = execution.get("number", 1)
        started = execution.get("started_at")
        self.started = dt.datetime.fromisoformat(started) if started else dt.datetime.now(dt.timezone.utc)
        self.dag: Dag = parse_workflow({"nodes": workflow.dag["nodes"]}, case_problems=lambda doc: [])
        self.states = service.node_states(workflow)

    def elapsed_s(self) -> float:
        return round((dt.datetime.now(dt.timezone.utc) - self.started).total_seconds(), 3)

    def percent(self) -> float:
        done = sum(1 for s in self.states.values() if s.status.is_final)
        return round(100.0 * done / max(1, len(self.states)), 1)


class WorkflowRunner:
    """See the module docstring. `poll_s`: how often a node looks at the row it waits for."""

    def __init__(self, app: Flask, host: Any, *, poll_s: float = 0.5, max_workflows: int = 4):
        self.app = app
        self.host = host  # the AgentHost: dispatches runs, cancels them
        self.settings = app.extensions["weldsim"]
        self.poll_s = poll_s
        self._max = max_workflows
        self._pool: ThreadPoolExecutor | None = None
        self._active: dict[int, threading.Event] = {}  # workflow id -> its "cancel" flag
        self._done: dict[int, threading.Event] = {}
        self._again: set[int] = set()  # submitted while their previous walk was ending
        self._guard = threading.Lock()
        self._stop = threading.Event()

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> WorkflowRunner:
        """Start the pool and resume the workflows a previous process left ``running``."""
        if self._pool is None:
            self._stop.clear()
            self._pool = ThreadPoolExecutor(self._max, thread_name_prefix="weldsim-workflow")
            with self._session() as session:
                ids = service.running_ids(session)
            for workflow_id in ids:
                log.info("workflow %s: resuming it", workflow_id)
                self.submit(workflow_id)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Leave every workflow where it is (``running``, resumed at the next start)."""
        self._stop.set()
        with self._guard:
            done = list(self._done.values())
        for event in done:
            event.wait(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def submit(self, workflow_id: int) -> None:
        if self._pool is None:
            raise RuntimeError("the workflow runner is not running")
        with self._guard:
            if workflow_id in self._active:  # its walk is ending (or resumed): walk it again after
                self._again.add(workflow_id)
                return
            self._active[workflow_id] = threading.Event()
            self._done[workflow_id] = threading.Event()
        self._pool.submit(self._walk, workflow_id)

    def cancel(self, workflow_id: int, timeout_s: float = 120.0) -> None:
        """Stop a workflow (its running node's run is cancelled); return once it has ended."""
        with self._guard:
            flag, done = self._active.get(workflow_id), self._done.get(workflow_id)
        if flag is None:  # not walked by this process (it should be: `start` resumes all)
            with self._session() as session:
                workflow = session.get(Workflow, workflow_id)
                if workflow is not None and workflow.state == BatchState.RUNNING.value:
                    service.finish(session, workflow_id, NodeStatus.CANCELLED, "cancelled on request")
            return
        flag.set()
        if not done.wait(timeout_s):
            raise Conflict(f"workflow {workflow_id} did not stop within {timeout_s:.0f} s")

    def is_active(self, workflow_id: int) -> bool:
        with self._guard:
            return workflow_id in self._active

    # --- one workflow --------------------------------------------------------------------------
    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self.app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()

    def _walk(self, workflow_id: int) -> None:
        with self._guard:
            flag, done = self._active[workflow_id], self._done[workflow_id]
        try:
            with self._session() as session:
                workflow = session.get(Workflow, workflow_id)
                if workflow is None or workflow.state != BatchState.RUNNING.value:
                    return
                walk = _Walk(workflow)
            result = run_nodes(walk.dag, walk.states, lambda node, inputs, state: self._execute(walk, node, inputs,
                                                                                                  state, flag),
                               lambda node_id, state: self._changed(walk, node_id, state),
                               cancelled=flag.is_set)
            failed = [(i, s) for i, s in walk.states.items() if s.status is NodeStatus.FAILED]
            error = f"node {failed[0][0]!r} failed: {failed[0][1].reason}" if failed else None
            if result is NodeStatus.CANCELLED:
                error = "cancelled on request"
            with self._session() as session:
                service.finish(session, workflow_id, result, error)
            log.info("workflow %s: %s", workflow_id, result.value)
        except Suspended:
            log.info("workflow %s: left running (the portal is stopping); resumed at the next start", workflow_id)
        except Exception as exc:  # the row must not stay running forever
            log.exception("workflow %s: walking it failed", workflow_id)
            try:
                with self._session() as session:
                    service.finish(session, workflow_id, NodeStatus.FAILED, f"the workflow runner failed: {exc}")
            except Exception:
                log.exception("workflow %s: could not record its failure", workflow_id)
        finally:
            with self._guard:
                self._active.pop(workflow_id, None)
                self._done.pop(workflow_id, None)
                again = workflow_id in self._again
                self._again.discard(workflow_id)
            done.set()
            if again and not self._stop.is_set():  # executed again while this walk was ending
                self.submit(workflow_id)

    def _changed(self, walk: _Walk, node_id: str, state: NodeState) -> None:
        node = walk.dag.nodes[node_id]
        message = f"node {node_id} ({node.type}) {state.status.value}" + (f": {state.reason}" if state.reason else "")
        event = {"type": "progress", "workflow_id": walk.id, "percent": walk.percent(), "phase": node.type,
                 "message": message, "elapsed_s": walk.elapsed_s(), "node_id": node_id, "node_type": node.type,
                 "status": state.status.value, "reason": state.reason}
        for key in ("run_id", "case_id", "geometry_version_id"):
            if key in state.result:
                event[key] = state.result[key]
        with self._session() as session:
            service.save_progress(session, walk.id, node_id, state, event)

    def _save_partial(self, walk: _Walk, node_id: str, state: NodeState, **result: Any) -> None:
        """Record work a node has started (what a resumed walk must wait for, not redo)."""
        state.result.update(result)
        with self._session() as session:
            service.save_progress(session, walk.id, node_id, state, None)

    def _wait(self, flag: threading.Event, check: Callable[[Session], Any], timeout_s: float, what: str,
              on_cancel: Callable[[], None] | None = None) -> Any:
        """Poll `check` (in a fresh session) until it returns something other than None."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._session() as session:
                found = check(session)
            if found is not None:
                return found
            if self._stop.is_set():
                raise Suspended()
            if flag.is_set():
                if on_cancel is not None:
                    on_cancel()
                raise Stopped()
            if time.monotonic() > deadline:
                raise NodeFailed(f"gave up waiting for {what} after {timeout_s:.0f} s")
            self._stop.wait(self.poll_s)

    def _execute(self, walk: _Walk, node: Node, inputs: dict[str, dict[str, Any]], state: NodeState,
                 flag: threading.Event) -> dict[str, Any]:
        if self._stop.is_set():
            raise Suspended()
        handler = getattr(self, f"_run_{node.type}")
        try:
            return handler(walk, node, inputs, state, flag)
        except DomainError as exc:  # a service refused: the node fails with the service's words
            details = "; ".join(f"{f}: {m}" if f else m for f, m in exc.details) if exc.details else str(exc)
            raise NodeFailed(details) from None

    def _user(self, session: Session, walk: _Walk) -> User:
        user = session.get(User, walk.user_id) if walk.user_id is not None else None
        if user is None:
            raise NodeFailed("the user who started this workflow no longer exists")
        return user

    # --- node types --------------------------------------------------------------------------------
    def _geometries(self):
        try:
            from .services import geometries
        except ImportError:
            raise NodeFailed("geometry versions cannot be made in this portal (portal.services.geometries "
                             "is missing)") from None
        return geometries

    def _jobs(self):
        """The process's geometry job runner (the agent host starts it; started here if not)."""
        from .geometry_jobs import jobs_of, start_jobs

        return jobs_of(self.app) or start_jobs(self.app)

    def _wait_version(self, walk: _Walk, flag: threading.Event, version_id: int, wanted: tuple[str, ...],
                      what: str) -> GeometryVersion:
        def check(session: Session):
            version = session.get(GeometryVersion, version_id)
            if version is None:
                raise NodeFailed(f"geometry version {version_id} was deleted")
            if version.status == "failed":
                raise NodeFailed(f"{what} of geometry version {version.version} failed: "
                                 f"{version.error or 'no reason given'}")
            return {"version": version.version, "status": version.status, "mesh_info": version.mesh_info} \
                if version.status in wanted else None

        return self._wait(flag, check, GEOMETRY_TIMEOUT_S, f"{what} of geometry version {version_id}")

    def _run_geometry(self, walk, node, inputs, state, flag) -> dict[str, Any]:
        geometries = self._geometries()
        version_id = state.result.get("geometry_version_id")
        if version_id is None:
            with self._session() as session:
                version = geometries.create_parametric(
                    session, self._user(session, walk), walk.project_id, params=node.config.model_dump(mode="json"),
                    storage_root=self.settings.storage_root, jobs=self._jobs())
                version_id, number = version.id, version.version
            self._save_partial(walk, node.id, state, geometry_version_id=version_id, version=number)
        found = self._wait_version(walk, flag, version_id, ("generated", "meshing", "meshed"), "generating")
        return {"geometry_version_id": version_id, "version": found["version"]}

    def _mesh_options(self, session: Session, walk: _Walk, node: Node) -> dict[str, Any]:
        """The sizes to mesh with: those the (first) solver taking this mesh resolves — its
        materials and frequency give the default size — so the version's mesh is the one
        the case would have made; the node's own settings when no solver takes it."""
        solver = next((n for n in walk.dag.nodes.values() if n.type == "solver" and node.id in n.inputs), None)
        if solver is None:
            return node.config.model_dump(mode="json", exclude_none=True)
        workflow = session.get(Workflow, walk.id)
        doc, _ = walk.dag.case_document(solver.id, name=solver.id)
        doc = inline_custom_materials(doc, custom_library(session, workflow.project.owner_id))
        try:
            case = parse_case(doc)
        except CaseValidationError as exc:
            raise NodeFailed(f"the case of solver node {solver.id!r} is not valid: {exc}") from None
        materials, _ = resolve_case_materials(case)
        sizes = dataclasses.asdict(resolve_case_sizes(case, materials))
        sizes.pop("rule", None)
        return sizes

    def _run_mesh(self, walk, node, inputs, state, flag) -> dict[str, Any]:
        geometries = self._geometries()
        version_id = next(r["geometry_version_id"] for r in inputs.values() if "geometry_version_id" in r)
        if not state.result.get("requested"):
            with self._session() as session:
                options = self._mesh_options(session, walk, node)
                geometries.request_mesh(session, self._user(session, walk), walk.project_id, version_id,
                                        options=options, storage_root=self.settings.storage_root, jobs=self._jobs())
            self._save_partial(walk, node.id, state, geometry_version_id=version_id, requested=True)
        found = self._wait_version(walk, flag, version_id, ("meshed",), "meshing")
        return {"geometry_version_id": version_id, "version": found["version"], "mesh_info": found["mesh_info"]}

    def _run_material(self, walk, node, inputs, state, flag) -> dict[str, Any]:
        return {"materials": dict(node.config.materials)}  # checked with the solver's case

    def _run_boundary_condition(self, walk, node, inputs, state, flag) -> dict[str, Any]:
        return {"boundary_conditions": len(node.config.boundary_conditions), "loads": len(node.config.loads)}

    def _case_name(self, walk: _Walk, node: Node) -> str:
        return f"{walk.name[:120]} (workflow {walk.id}, execution {walk.number}, node {node.id})"

    def _run_solver(self, walk, node, inputs, state, flag) -> dict[str, Any]:
        from .services import cases, runs

        mesh = next(r for i, r in inputs.items() if walk.dag.nodes[i].type == "mesh")
        run_id = state.result.get("run_id")
        if run_id is None:
            name = self._case_name(walk, node)
            doc, _ = walk.dag.case_document(node.id, name=name)
            del doc["geometry"]  # the geometry version's
            with self._session() as session:
                user = self._user(session, walk)
                case_id = state.result.get("case_id") or self._existing_case(session, walk.project_id, name)
                if case_id is None:
                    case_id = cases.create_case(session, user, walk.project_id, spec=doc, name=name,
                                                geometry_version_id=mesh["geometry_version_id"],
                                                storage_root=self.settings.storage_root).id
            self._save_partial(walk, node.id, state, case_id=case_id)
            with self._session() as session:
                run = runs.submit_run(session, self._user(session, walk), walk.project_id, case_id,
                                      dispatcher=self.host, storage_root=self.settings.storage_root,
                                      executor=self.settings.executor)
                run_id = run.run_id
            self._save_partial(walk, node.id, state, run_id=run_id)
            self._changed(walk, node.id, state)  # a watcher learns the run id (to open /ws/runs/<id>)

        def check(session: Session):
            run = session.get(Run, run_id)
            if run is None:
                raise NodeFailed(f"run {run_id} was deleted")
            if not RunState(run.state).is_terminal:
                return None
            return {"state": run.state, "reason": run.reason, "metrics": {m.name: m.value for m in run.metrics}}

        def cancel_run() -> None:
            try:
                self.host.cancel_run(run_id)
            except Exception:
                log.exception("workflow %s: cancelling run %s failed", walk.id, run_id)

        found = self._wait(flag, check, RUN_TIMEOUT_S, f"run {run_id}", on_cancel=cancel_run)
        if found["state"] != RunState.COMPLETED.value:
            detail = self._logged_error(run_id)
            raise NodeFailed(f"run {run_id} {found['state']}: {found['reason'] or 'no reason given'}"
                             + (f" — {detail}" if detail else ""))
        return {"case_id": state.result["case_id"], "run_id": run_id, "metrics": found["metrics"]}

    def _logged_error(self, run_id: str) -> str | None:
        """The last ERROR line of the run's solver.log (what the solver said), if any."""
        try:
            text = self.host.logs(run_id, 50)
        except Exception:
            return None
        errors = [line.split(" ERROR ", 1)[1].strip() for line in text.splitlines() if " ERROR " in line]
        return errors[-1][:1000] if errors else None

    @staticmethod
    def _existing_case(session: Session, project_id: int, name: str) -> int | None:
        """The case a walk interrupted after creating it made (resume), if any."""
        case = session.query(SimulationCase).filter_by(project_id=project_id, name=name).one_or_none()
        return None if case is None else case.id

    def _run_post_process(self, walk, node, inputs, state, flag) -> dict[str, Any]:
        run_id = next(iter(inputs.values()))["run_id"]
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise NodeFailed(f"run {run_id} was deleted")
            reported = {m.name: {"value": m.value, "unit": m.unit} for m in run.metrics}
        wanted = node.config.metrics or sorted(reported)
        missing = [name for name in wanted if name not in reported]
        if missing:
            raise NodeFailed(f"run {run_id} reported no {', '.join(missing)} "
                             f"(it reported: {', '.join(sorted(reported)) or 'nothing'})")
        out_of_bounds = []
        for name, bounds in node.config.bounds.items():
            if name not in reported:
                raise NodeFailed(f"run {run_id} reported no {name} (needed by bounds)")
            value = reported[name]["value"]
            if (bounds.min is not None and value < bounds.min) or (bounds.max is not None and value > bounds.max):
                out_of_bounds.append(f"{name} = {value:g} {reported[name]['unit']} is outside "
                                     f"[{'' if bounds.min is None else f'{bounds.min:g}'}, "
                                     f"{'' if bounds.max is None else f'{bounds.max:g}'}]")
        if out_of_bounds:
            raise NodeFailed("; ".join(out_of_bounds))
        return {"run_id": run_id, "metrics": {name: reported[name] for name in wanted}}


# --- /ws/workflows/<id> ------------------------------------------------------------------------

class WorkflowSubscription:
    """The messages of one workflow for one WebSocket client, read from its row.

    Same interface as progress_hub.Subscription (get / ended / closed), so portal.ws's
    `stream` sends them: the events so far (a late joiner sees the whole history), new
    ones as they are written, then one terminal message once the workflow has ended::

        {"type": "completed", "workflow_id", "status": "completed" | "cancelled", "elapsed_s", "nodes"}
        {"type": "error", "workflow_id", "status": "failed", "error", "elapsed_s", "nodes"}

    ("nodes": node id -> status). A draft workflow sends nothing until it is executed.
    """

    def __init__(self, app: Flask, workflow_id: int, poll_s: float = 0.3):
        self.app, self.workflow_id, self.poll_s = app, workflow_id, poll_s
        self.ended = False
        self.closed = False
        self._queue: list[dict[str, Any]] = []
        self._sent = 0
        self._execution: int | None = None
        self._next_poll = 0.0

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        if not self._queue and not self.ended and time.monotonic() >= self._next_poll:
            self._poll()
        if not self._queue:
            return None
        message = self._queue.pop(0)
        if message["type"] in TERMINAL_TYPES:
            self.ended = True
        return message

    def _poll(self) -> None:
        self._next_poll = time.monotonic() + self.poll_s
        with self.app.app_context():
            try:
                workflow = db.session.get(Workflow, self.workflow_id)
                if workflow is None:  # deleted while watched
                    self.closed = True
                    return
                execution = (workflow.dag.get("execution") or {})
                if execution.get("number") != self._execution:  # (re-)executed: its events from the start
                    self._execution, self._sent = execution.get("number"), 0
                events = service.events(workflow)
                self._queue.extend(events[self._sent:])
                self._sent = len(events)
                if workflow.state in service.FINAL_STATES and execution:
                    self._queue.append(terminal_message(workflow))
            finally:
                db.session.remove()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> WorkflowSubscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def terminal_message(workflow: Workflow) -> dict[str, Any]:
    """The last message of an ended workflow's stream (see WorkflowSubscription)."""
    execution = workflow.dag.get("execution") or {}
    nodes = {node_id: s["status"] for node_id, s in service.node_statuses(workflow).items()}
    elapsed = None
    if execution.get("started_at") and execution.get("finished_at"):
        elapsed = round((dt.datetime.fromisoformat(execution["finished_at"])
                         - dt.datetime.fromisoformat(execution["started_at"])).total_seconds(), 3)
    base = {"workflow_id": workflow.id, "elapsed_s": elapsed, "nodes": nodes}
    if workflow.state == BatchState.COMPLETED.value:
        return {"type": "completed", **base, "status": "completed"}
    if workflow.state == BatchState.CANCELLED.value:
        return {"type": "completed", **base, "status": "cancelled"}
    return {"type": "error", **base, "status": workflow.state, "error": execution.get("error") or "workflow failed"}


__all__ = ["WorkflowRunner", "WorkflowSubscription", "terminal_message"]
