"""Workflows of a project: a DAG of steps (weldsim_hpc.workflow) stored with its state.

Why no tables of their own: the Workflow row's `dag` JSON holds everything a workflow
is and has done, and its `state` (BatchState) where it stands::

    {"nodes": [{"id", "type", "config", "inputs"}, ...],   the DAG as the user gave it
     "status": {node id: {"status", "reason", "result", "started_at", "finished_at", "cause"}},
     "events": [progress messages, in order],              what /ws/workflows/<id> replays
     "execution": {"number", "user_id", "started_at", "finished_at", "error"}}

Validation is the library's (`parse_workflow`) with one portal addition: a solver's
assembled case is checked with the owner's custom materials inlined, as a run will be.
Every problem is an Invalid detail whose field names the node ("nodes.mesh.inputs",
"nodes.bc.config.boundary_conditions[0].value"); nothing is stored then.

Executing hands the workflow to the `WorkflowRunner` of the portal's agent host
(portal.workflow_runner), which walks it through the same services (geometries, cases,
runs) and writes node statuses back here through `save_progress`.

Example::

    wf = create_workflow(session, user, project.id, name="tab weld", nodes=[...])
    wf = execute_workflow(session, user, project.id, wf.id, runner=host.workflows)
    node_statuses(wf)["solve"]["status"]     # 'running'
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from weldsim_hpc.workflow import (NodeState, NodeStatus, Workflow as Dag, WorkflowValidationError,
                                  check_case_document, now_iso, parse_workflow)

from ..models import BatchState, Project, User, Workflow
from .access import get_project
from .errors import Conflict, Invalid, NotFound, Unavailable
from .materials import custom_library, inline_custom_materials
from .names import check_name
from .pagination import DEFAULT_PER_PAGE, Page, paginate

FINAL_STATES = frozenset({BatchState.COMPLETED.value, BatchState.FAILED.value, BatchState.CANCELLED.value})


class WorkflowStarter(Protocol):
    """What execute needs of the runner: start (or resume) walking a workflow by id."""

    def submit(self, workflow_id: int) -> None: ...


# --- validation -------------------------------------------------------------------------------

def case_checker(session: Session, owner_id: int) -> Callable[[dict[str, Any]], list[tuple[str, str]]]:
    """parse_case's problems for a solver's case, with the owner's custom materials inlined."""
    library = custom_library(session, owner_id)
    return lambda doc: check_case_document(inline_custom_materials(doc, library))


def validate_nodes(session: Session, project: Project, nodes: Any) -> Dag:
    """The validated DAG; Invalid with one detail per problem, each naming its node."""
    try:
        return parse_workflow({"nodes": nodes}, case_problems=case_checker(session, project.owner_id))
    except WorkflowValidationError as exc:
        raise Invalid.from_problems(exc.problems) from None


def validate_workflow(session: Session, user: User, project_id: int, nodes: Any) -> Dag:
    """Check a DAG without storing anything (the API's dry run)."""
    return validate_nodes(session, get_project(session, user, project_id), nodes)


# --- create, read, delete ----------------------------------------------------------------

def create_workflow(session: Session, user: User, project_id: int, *, name: str, nodes: Any) -> Workflow:
    """A new ``draft`` workflow of a visible project; Invalid (nothing stored) if the DAG is not sound."""
    project = get_project(session, user, project_id)
    name = check_name(name)
    dag = validate_nodes(session, project, nodes)
    workflow = Workflow(project_id=project.id, name=name, state=BatchState.DRAFT.value,
                        dag={"nodes": dag.as_json(), "status": _pending(dag), "events": [], "execution": None})
    session.add(workflow)
    session.commit()
    return workflow


def get_workflow(session: Session, user: User, project_id: int, workflow_id: int) -> Workflow:
    """A workflow of a project `user` may see; NotFound otherwise (or if it is another project's)."""
    project = get_project(session, user, project_id)
    workflow = session.get(Workflow, workflow_id) if _is_id(workflow_id) else None
    if workflow is None or workflow.project_id != project.id:
        raise NotFound(f"workflow {workflow_id} not found in project {project.id}")
    return workflow


def get_workflow_by_id(session: Session, user: User, workflow_id: int) -> Workflow:
    """A workflow by id alone (the WebSocket), if `user` may see its project; else NotFound."""
    workflow = session.get(Workflow, workflow_id) if _is_id(workflow_id) else None
    if workflow is None:
        raise NotFound(f"workflow {workflow_id} not found")
    try:
        get_project(session, user, workflow.project_id)
    except NotFound:
        raise NotFound(f"workflow {workflow_id} not found") from None
    return workflow


def list_workflows(session: Session, user: User, project_id: int, *, page: int = 1,
                   per_page: int = DEFAULT_PER_PAGE) -> Page:
    project = get_project(session, user, project_id)
    stmt = select(Workflow).where(Workflow.project_id == project.id).order_by(Workflow.id.desc())
    return paginate(session, stmt, page, per_page)


def delete_workflow(session: Session, user: User, project_id: int, workflow_id: int) -> None:
    """Delete a workflow (409 while it runs: cancel it first). The cases, runs and geometry
    versions it made stay: they belong to the project, like any others."""
    workflow = get_workflow(session, user, project_id, workflow_id)
    if workflow.state == BatchState.RUNNING.value:
        raise Conflict(f"workflow {workflow.id} is running: cancel it first")
    session.delete(workflow)
    session.commit()


# --- execution -----------------------------------------------------------------------------

def execute_workflow(session: Session, user: User, project_id: int, workflow_id: int, *,
                     runner: WorkflowStarter | None) -> Workflow:
    """Start walking the workflow: validated again now (custom materials may have changed),
    every node ``pending``, the workflow ``running``; the runner does the rest.

    Conflict while it runs; Unavailable when this portal process hosts no runner.
    """
    workflow = get_workflow(session, user, project_id, workflow_id)
    if runner is None:
        raise Unavailable("no workflow runner runs in this portal process: start the portal with "
                          "`weldsim portal` (or the documented gunicorn command) to execute workflows")
    if workflow.state == BatchState.RUNNING.value:
        raise Conflict(f"workflow {workflow.id} is running already")
    dag = validate_nodes(session, workflow.project, workflow.dag.get("nodes"))
    previous = (workflow.dag.get("execution") or {}).get("number", 0)
    workflow.dag = {"nodes": dag.as_json(), "status": _pending(dag), "events": [],
                    "execution": {"number": previous + 1, "user_id": user.id, "started_at": now_iso(),
                                  "finished_at": None, "error": None}}
    workflow.state = BatchState.RUNNING.value
    session.commit()
    runner.submit(workflow.id)
    return workflow


def cancel_workflow(session: Session, user: User, project_id: int, workflow_id: int, *,
                    canceller: Callable[[int], None] | None) -> Workflow:
    """Ask the runner to stop a running workflow (its current run is cancelled too) and
    return it once it has ended; an ended workflow is returned as it is."""
    workflow = get_workflow(session, user, project_id, workflow_id)
    if workflow.state != BatchState.RUNNING.value:
        return workflow
    if canceller is None:
        raise Unavailable("no workflow runner runs in this portal process to cancel the workflow")
    canceller(workflow.id)
    session.expire_all()
    return get_workflow(session, user, project_id, workflow_id)


def save_progress(session: Session, workflow_id: int, node_id: str, state: NodeState,
                  event: dict[str, Any] | None) -> None:
    """The runner's write: one node's state and its event, if any (a new JSON value:
    in-place changes of a JSON column are not tracked)."""
    workflow = session.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound(f"workflow {workflow_id} not found")
    dag = copy.deepcopy(workflow.dag)
    dag.setdefault("status", {})[node_id] = state.as_json()
    if event is not None:
        dag.setdefault("events", []).append(event)
    workflow.dag = dag
    session.commit()


def finish(session: Session, workflow_id: int, outcome: NodeStatus, error: str | None) -> None:
    """The runner's last write: the workflow's final state."""
    workflow = session.get(Workflow, workflow_id)
    if workflow is None:
        return
    dag = copy.deepcopy(workflow.dag)
    dag["execution"] = {**(dag.get("execution") or {}), "finished_at": now_iso(), "error": error}
    workflow.dag = dag
    workflow.state = {NodeStatus.COMPLETED: BatchState.COMPLETED, NodeStatus.CANCELLED: BatchState.CANCELLED}.get(
        outcome, BatchState.FAILED).value
    session.commit()


# --- reading the JSON ------------------------------------------------------------------------

def node_statuses(workflow: Workflow) -> dict[str, dict[str, Any]]:
    """Node id -> {"status", "reason", "result", …} (pending for nodes without one)."""
    status = (workflow.dag or {}).get("status") or {}
    return {n["id"]: status.get(n["id"]) or NodeState().as_json() for n in (workflow.dag or {}).get("nodes", [])}


def order_of(workflow: Workflow) -> list[str]:
    """The order the stored nodes run in (topological)."""
    nodes = (workflow.dag or {}).get("nodes") or []
    try:
        return parse_workflow({"nodes": nodes}, case_problems=lambda doc: []).order
    except WorkflowValidationError:  # stored before a library change made it invalid: as given
        return [n.get("id") for n in nodes if isinstance(n, dict)]


def node_states(workflow: Workflow) -> dict[str, NodeState]:
    return {k: NodeState.from_json(v) for k, v in node_statuses(workflow).items()}


def events(workflow: Workflow) -> list[dict[str, Any]]:
    return list((workflow.dag or {}).get("events") or [])


def running_ids(session: Session) -> list[int]:
    """Workflows left ``running`` (the runner resumes them at start)."""
    return list(session.scalars(select(Workflow.id).where(Workflow.state == BatchState.RUNNING.value)
                                .order_by(Workflow.id)))


def _pending(dag: Dag) -> dict[str, dict[str, Any]]:
    return {node_id: NodeState().as_json() for node_id in dag.nodes}


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
