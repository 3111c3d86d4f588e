"""/api/v1/projects/{project_id}/workflows: DAGs of steps, validated per node, executed by the portal.

    POST   /projects/{project_id}/workflows                      create (201; 422 names every node's problems)
    POST   /projects/{project_id}/workflows/validate             check a DAG, store nothing (200 or 422)
    GET    /projects/{project_id}/workflows                      list
    GET    /projects/{project_id}/workflows/{workflow_id}        the DAG, its state and every node's status
    POST   /projects/{project_id}/workflows/{workflow_id}/execute   start (202); follow /ws/workflows/{id}
    POST   /projects/{project_id}/workflows/{workflow_id}/cancel    stop; answers once it has ended
    DELETE /projects/{project_id}/workflows/{workflow_id}        delete (409 while running)

A node is ``{"id", "type", "config", "inputs"}`` (weldsim_hpc.workflow lists the types and
what each needs). Errors name the node: ``{"field": "nodes.mesh.inputs", "message":
"missing input: a mesh node needs one geometry input (got none)"}``. Executing and
cancelling need the runner of the agent host this process runs (else 503).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from weldsim_hpc.workflow import MAX_NODES, NODE_TYPES

from ..extensions import db
from ..models import BatchState, Workflow
from ..services import workflows
from .common import (Name, PageQuery, Strict, api_blueprint, current_user, json_response, no_content,
                     page_model, page_response)
from .errors import ErrorEnvelope

bp = api_blueprint("workflows", "/projects/<int:project_id>/workflows",
                   "Workflows: DAGs of geometry, mesh, material, boundary condition, solver and "
                   "post-processing steps, run through the portal's services")

NodeType = Literal[NODE_TYPES]  # type: ignore[valid-type]


class NodeIn(BaseModel):
    id: str = Field(description="a letter, then up to 63 letters, digits, '_' or '-'")
    type: NodeType
    config: dict[str, Any] = Field(default_factory=dict, description="the type's settings (see weldsim_hpc.workflow)")
    inputs: list[str] = Field(default_factory=list, description="ids of the nodes this one takes inputs from")


# documented as NodeIn, checked in the service (which names every problem by node id)
Nodes = SkipValidation[list[NodeIn]]


class NodeStatusOut(BaseModel):
    status: str = Field(description="pending, running, completed, failed, skipped or cancelled")
    reason: str | None = Field(description="why it failed, was skipped (naming the failed node) or cancelled")
    result: dict[str, Any] = Field(description="geometry_version_id, case_id, run_id, metrics … as the node made them")
    started_at: str | None
    finished_at: str | None
    cause: str | None = Field(description="a skipped node: the failed node it waited for")


class WorkflowSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    name: str
    state: BatchState = Field(description="draft → running → completed | failed | cancelled")
    created_at: dt.datetime
    updated_at: dt.datetime


class WorkflowOut(WorkflowSummaryOut):
    nodes: list[dict[str, Any]] = Field(description="the DAG as given")
    order: list[str] = Field(description="the order the nodes run in")
    node_status: dict[str, NodeStatusOut]
    execution: dict[str, Any] | None = Field(description="number, user_id, started_at, finished_at, error")
    progress_ws: str = Field(description="the WebSocket with the workflow's progress messages")


WorkflowPage = page_model(WorkflowSummaryOut)


class WorkflowCreate(Strict):
    name: Name
    nodes: Nodes = Field(description=f"at most {MAX_NODES} nodes")


class WorkflowCheck(Strict):
    nodes: Nodes


class ValidationOut(BaseModel):
    valid: bool
    order: list[str]


class ProjectPath(BaseModel):
    project_id: int


class WorkflowPath(BaseModel):
    project_id: int
    workflow_id: int


def workflow_data(workflow: Workflow) -> dict[str, Any]:
    nodes = workflow.dag.get("nodes", [])
    return {"id": workflow.id, "project_id": workflow.project_id, "name": workflow.name, "state": workflow.state,
            "created_at": workflow.created_at, "updated_at": workflow.updated_at, "nodes": nodes,
            "order": workflows.order_of(workflow), "node_status": workflows.node_statuses(workflow),
            "execution": workflow.dag.get("execution"), "progress_ws": f"/ws/workflows/{workflow.id}"}


def _runner():
    from ..agent_host import host_of

    host = host_of(current_app)
    return None if host is None else getattr(host, "workflows", None)


@bp.post("", responses={201: WorkflowOut})
def create_workflow(path: ProjectPath, body: WorkflowCreate):
    """Create a ``draft`` workflow; 422 names every problem by node (nothing is stored)."""
    workflow = workflows.create_workflow(db.session, current_user(), path.project_id, name=body.name, nodes=body.nodes)
    return json_response(WorkflowOut, workflow_data(workflow), 201,
                         Location=f"{bp.url_prefix.replace('<int:project_id>', str(path.project_id))}/{workflow.id}")


@bp.post("/validate", responses={200: ValidationOut})
def validate_workflow(path: ProjectPath, body: WorkflowCheck):
    """Check a DAG without storing it: 200 with the run order, or 422 naming every problem by node."""
    dag = workflows.validate_workflow(db.session, current_user(), path.project_id, body.nodes)
    return json_response(ValidationOut, {"valid": True, "order": dag.order})


@bp.get("", responses={200: WorkflowPage})
def list_workflows(path: ProjectPath, query: PageQuery):
    page = workflows.list_workflows(db.session, current_user(), path.project_id, page=query.page,
                                    per_page=query.per_page)
    return page_response(WorkflowPage, page)


@bp.get("/<int:workflow_id>", responses={200: WorkflowOut})
def get_workflow(path: WorkflowPath):
    """The workflow with every node's status (pending, running, completed, failed, skipped, cancelled)."""
    workflow = workflows.get_workflow(db.session, current_user(), path.project_id, path.workflow_id)
    return json_response(WorkflowOut, workflow_data(workflow))


@bp.post("/<int:workflow_id>/execute", responses={202: WorkflowOut, 503: ErrorEnvelope})
def execute_workflow(path: WorkflowPath):
    """Start the workflow (again): 202, ``running``; follow /ws/workflows/{workflow_id}."""
    workflow = workflows.execute_workflow(db.session, current_user(), path.project_id, path.workflow_id,
                                          runner=_runner())
    return json_response(WorkflowOut, workflow_data(workflow), 202)


@bp.post("/<int:workflow_id>/cancel", responses={200: WorkflowOut, 503: ErrorEnvelope})
def cancel_workflow(path: WorkflowPath):
    """Cancel a running workflow (and the run it waits for); answers once it has ended."""
    runner = _runner()
    workflow = workflows.cancel_workflow(db.session, current_user(), path.project_id, path.workflow_id,
                                         canceller=None if runner is None else runner.cancel)
    return json_response(WorkflowOut, workflow_data(workflow))


@bp.delete("/<int:workflow_id>", responses={204: None})
def delete_workflow(path: WorkflowPath):
    """Delete the workflow (409 while running); the geometry, cases and runs it made stay."""
    workflows.delete_workflow(db.session, current_user(), path.project_id, path.workflow_id)
    return no_content()
