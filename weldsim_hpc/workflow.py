"""Workflows: a DAG of steps — validate it, order it, and walk it.

A workflow is a list of nodes ``{"id", "type", "config", "inputs"}``; `inputs` name the
nodes a node takes its inputs from (the edges). Node types and what they need:

    geometry            config: a parametric geometry (horn family or tab_stack, `kind` + params)
    mesh                config: mesh settings (size_m, …);        inputs: one geometry
    material            config: {"materials": {volume: material id}}
    boundary_condition  config: {"boundary_conditions": [...], "loads": [...]} (CaseSpec's models)
    solver              config: the rest of a CaseSpec (analysis, solver, time, weld, probes …);
                        inputs: one mesh, one or more material, boundary_condition nodes
                        (at least one unless the analysis is modal: a free-free horn has none)
    post_process        config: {"metrics": [names], "bounds": {name: {"min", "max"}}};
                        inputs: one solver

Why pure: the portal stores the DAG as JSON and runs it through its services, but what
makes a DAG sound — no cycles, the inputs each step needs, configurations the case models
accept, and a solver's assembled case passing the same checks a run will make — is
knowledge of the library, testable without a database. Every problem names its node:
``nodes.<id>.config.<field>`` (``nodes[<i>]`` only when the node has no usable id).

`run_nodes` walks a validated workflow in topological order (graphlib) with a callback per
node: a failing node leaves every node that depends on it, directly or not, ``skipped``
with a reason naming the failed node; nodes that do not depend on it still run.

Example::

    wf = parse_workflow({"nodes": [...]})          # WorkflowValidationError(problems)
    wf.order                                        # ['geo', 'mesh', 'mat', 'bc', 'solve', 'post']
    doc, origins = wf.case_document("solve", name="my case")
"""

from __future__ import annotations

import datetime as dt
import graphlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from .case import (AnalysisType, BoundaryCondition, HarmonicSettings, Load, OutputSettings, Probe,
                   SolverSettings, ThermalSettings, TimeSettings, WeldParameters)
from .case_io import parse_case, validation_problems
from .errors import CaseValidationError, WeldSimError
from .geometry import GeometryParams, MeshSettings
from .results import MetricError, metric_spec

Problem = tuple[str, str]
NODE_TYPES = ("geometry", "mesh", "material", "boundary_condition", "solver", "post_process")
NODE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_NODES = 200
MAX_INPUTS = 50
#: node type -> {input type: (minimum, maximum or None)}; input types not listed are refused
INPUT_RULES: dict[str, dict[str, tuple[int, int | None]]] = {
    "geometry": {},
    "mesh": {"geometry": (1, 1)},
    "material": {},
    "boundary_condition": {},
    "solver": {"mesh": (1, 1), "material": (1, None), "boundary_condition": (1, None)},
    "post_process": {"solver": (1, 1)},
}
#: analyses whose solver node may do without boundary conditions (free-free modal)
FREE_ANALYSES = ("modal",)


class WorkflowValidationError(WeldSimError):
    """The DAG is not sound; `problems` holds one (field path, reason) per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(f"{p}: {m}" for p, m in self.problems))


class NodeFailed(WeldSimError):
    """A node could not do its work; the message is the node's reason."""


class NodeStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (NodeStatus.PENDING, NodeStatus.RUNNING)


# --- node configurations (CaseSpec's own models where there is one) ----------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaterialConfig(_Strict):
    """Volume group -> material id (built-in, or a custom material of the workflow's owner)."""

    materials: dict[Annotated[str, Field(min_length=1, max_length=64)],
                    Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1)


class BoundaryConditionConfig(_Strict):
    boundary_conditions: list[BoundaryCondition] = Field(default_factory=list)
    loads: list[Load] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> BoundaryConditionConfig:
        if not self.loads and not self.boundary_conditions:
            raise ValueError("give at least one boundary condition or load")
        return self


class SolverConfig(_Strict):
    """What a CaseSpec holds besides geometry, mesh, materials, boundary conditions and loads."""

    analysis: AnalysisType
    description: str = Field("", max_length=5000)
    element_order: Literal[1, 2] | None = None
    time: TimeSettings | None = None
    thermal: ThermalSettings | None = None
    harmonic: HarmonicSettings | None = None
    weld: WeldParameters | None = None
    solver: SolverSettings | None = None
    probes: list[Probe] = Field(default_factory=list)
    outputs: OutputSettings | None = None


class Bounds(_Strict):
    min: float | None = None
    max: float | None = None


def _metric_name(name: str) -> str:
    try:
        metric_spec(name)
    except MetricError as exc:
        raise ValueError(str(exc)) from None
    return name


MetricName = Annotated[str, Field(max_length=200), AfterValidator(_metric_name)]


class PostProcessConfig(_Strict):
    """Metrics to collect from the solver's run; `bounds` fail the node when a value is outside."""

    metrics: list[MetricName] = Field(default_factory=list, max_length=200)
    bounds: dict[str, Bounds] = Field(default_factory=dict)

    @field_validator("bounds")
    @classmethod
    def _registered_bounds(cls, bounds: dict[str, Bounds]) -> dict[str, Bounds]:
        for name, b in bounds.items():
            _metric_name(name)
            if b.min is not None and b.max is not None and b.min > b.max:
                raise ValueError(f"{name}: min ({b.min:g}) is above max ({b.max:g})")
        return bounds


CONFIG_MODELS: dict[str, TypeAdapter] = {
    "geometry": TypeAdapter(GeometryParams),
    "mesh": TypeAdapter(MeshSettings),
    "material": TypeAdapter(MaterialConfig),
    "boundary_condition": TypeAdapter(BoundaryConditionConfig),
    "solver": TypeAdapter(SolverConfig),
    "post_process": TypeAdapter(PostProcessConfig),
}


# --- the validated workflow ---------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    id: str
    type: str
    config: Any  # the validated config model
    raw_config: dict[str, Any]  # as given (JSON)
    inputs: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "config": self.raw_config, "inputs": list(self.inputs)}


@dataclass(frozen=True)
class Workflow:
    nodes: dict[str, Node]  # in the order given
    order: list[str]  # topological: every node after its inputs

    def inputs_of(self, node_id: str, node_type: str) -> list[Node]:
        return [self.nodes[i] for i in self.nodes[node_id].inputs if self.nodes[i].type == node_type]

    def dependants(self, node_id: str) -> set[str]:
        """Every node that depends on `node_id`, directly or not."""
        found: set[str] = set()
        todo = [node_id]
        while todo:
            current = todo.pop()
            for other in self.nodes.values():
                if current in other.inputs and other.id not in found:
                    found.add(other.id)
                    todo.append(other.id)
        return found

    def as_json(self) -> list[dict[str, Any]]:
        return [n.as_json() for n in self.nodes.values()]

    def case_document(self, solver_id: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The CaseSpec document a solver node runs, and where its parts came from.

        `origins` maps a case path prefix ("geometry", "materials.horn",
        "boundary_conditions[2]") to the node path it came from
        ("nodes.geo.config", "nodes.mat.config.materials.horn", …); see `node_path`.
        """
        solver = self.nodes[solver_id]
        mesh = self.inputs_of(solver_id, "mesh")[0]
        geometry = self.inputs_of(mesh.id, "geometry")[0]
        doc: dict[str, Any] = {"name": name, **solver.config.model_dump(mode="json", exclude_none=True)}
        doc["geometry"] = geometry.config.model_dump(mode="json")
        doc["mesh"] = mesh.config.model_dump(mode="json")
        origins = {"geometry": f"nodes.{geometry.id}.config", "mesh": f"nodes.{mesh.id}.config",
                   "": f"nodes.{solver_id}.config", "name": f"nodes.{solver_id}.id"}
        doc["materials"] = {}
        materials = self.inputs_of(solver_id, "material")
        if materials:  # a volume without a material: the (first) material node should name it
            origins["materials"] = f"nodes.{materials[0].id}.config.materials"
        for mat in materials:
            for volume, material_id in mat.config.materials.items():
                doc["materials"][volume] = material_id
                origins[f"materials.{volume}"] = f"nodes.{mat.id}.config.materials.{volume}"
                origins.setdefault(f"custom_materials.{material_id}", f"nodes.{mat.id}.config.materials.{volume}")
        for key in ("boundary_conditions", "loads"):
            items: list[Any] = []
            for bc in self.inputs_of(solver_id, "boundary_condition"):
                for j, item in enumerate(getattr(bc.config, key)):
                    origins[f"{key}[{len(items)}]"] = f"nodes.{bc.id}.config.{key}[{j}]"
                    items.append(item.model_dump(mode="json"))
            doc[key] = items
        return doc, origins


_INDEXED = re.compile(r"^((?:boundary_conditions|loads)\[\d+\])(.*)$")
_KEYED = re.compile(r"^((?:materials|custom_materials)\.[^.\[]+)(.*)$")
_SECTION = re.compile(r"^(geometry|mesh|materials|name)(?=$|[.\[])(.*)$")


def node_path(case_path: str, origins: Mapping[str, str]) -> str:
    """A case problem's path as the path of the node (and field) that caused it."""
    for pattern in (_INDEXED, _KEYED, _SECTION):
        match = pattern.match(case_path)
        if match and match.group(1) in origins:
            rest = match.group(2)
            base = origins[match.group(1)]
            if match.group(1).startswith("custom_materials"):
                rest = ""  # a custom material's own properties are not in the workflow
            return base + rest
    return origins[""] + ("" if not case_path else ("." + case_path if not case_path.startswith("[") else case_path))


def check_case_document(doc: dict[str, Any]) -> list[Problem]:
    """The problems parse_case finds in `doc` (built-in materials only)."""
    try:
        parse_case(doc)
    except CaseValidationError as exc:
        return exc.errors
    return []


CaseChecker = Callable[[dict[str, Any]], list[Problem]]


def _node_prefix(raw: Any, index: int, seen: set[str]) -> str:
    node_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(node_id, str) and NODE_ID.match(node_id) and node_id not in seen:
        return f"nodes.{node_id}"
    return f"nodes[{index}]"


def _parse_node(raw: Any, prefix: str, problems: list[Problem]) -> Node | None:
    if not isinstance(raw, dict):
        problems.append((prefix, "must be an object with id, type, config and inputs"))
        return None
    unknown = sorted(set(raw) - {"id", "type", "config", "inputs"})
    for key in unknown:
        problems.append((f"{prefix}.{key}", "unknown field (a node has id, type, config, inputs)"))
    node_id, node_type = raw.get("id"), raw.get("type")
    config, inputs = raw.get("config", {}), raw.get("inputs", [])
    ok = not unknown
    if not isinstance(node_id, str) or not NODE_ID.match(node_id):
        problems.append((f"{prefix}.id", "required: a letter, then up to 63 letters, digits, '_' or '-'"))
        ok = False
    if node_type not in NODE_TYPES:
        problems.append((f"{prefix}.type", f"unknown node type {node_type!r} (valid: {', '.join(NODE_TYPES)})"))
        return None
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs) or len(inputs) > MAX_INPUTS:
        problems.append((f"{prefix}.inputs", f"must be a list of at most {MAX_INPUTS} node ids"))
        ok = False
    elif len(set(inputs)) != len(inputs):
        problems.append((f"{prefix}.inputs", "names a node twice"))
        ok = False
    if not isinstance(config, dict):
        problems.append((f"{prefix}.config", "must be an object"))
        return None
    try:
        model = CONFIG_MODELS[node_type].validate_python(config)
    except ValidationError as exc:
        problems.extend((f"{prefix}.config" + (f".{p}" if p and not p.startswith("[") else p), m)
                        for p, m in validation_problems(exc, config))
        return None
    return Node(node_id, node_type, model, config, tuple(inputs)) if ok else None


def _check_inputs(nodes: dict[str, Node], edges: dict[str, list[str]], problems: list[Problem]) -> None:
    """Unknown inputs (against every node id given), then the input rules of each node whose
    inputs all parsed (a node with a broken config has no type-checked outputs yet)."""
    for node_id, inputs in edges.items():
        for name in inputs:
            if name not in edges:
                problems.append((f"nodes.{node_id}.inputs", f"unknown node {name!r} (nodes: {', '.join(edges)})"))
    for node in nodes.values():
        if not all(i in nodes for i in node.inputs):
            continue
        where = f"nodes.{node.id}.inputs"
        rules = INPUT_RULES[node.type]
        kinds: dict[str, int] = {}
        for i in node.inputs:
            kinds[nodes[i].type] = kinds.get(nodes[i].type, 0) + 1
        for kind in kinds:
            if kind not in rules:
                allowed = ", ".join(rules) or "none"
                problems.append((where, f"a {node.type} node takes no {kind} input (its inputs: {allowed})"))
        for kind, (low, high) in rules.items():
            if node.type == "solver" and kind == "boundary_condition" and node.config.analysis in FREE_ANALYSES:
                low = 0
            count = kinds.get(kind, 0)
            if count < low:
                need = "one" if (low, high) == (1, 1) else f"at least {low}"
                problems.append((where, f"missing input: a {node.type} node needs {need} {kind} input "
                                        f"(got {count or 'none'})"))
            elif high is not None and count > high:
                problems.append((where, f"a {node.type} node takes {high} {kind} input (got {count})"))


def _order(edges: dict[str, list[str]], problems: list[Problem]) -> list[str]:
    graph = {node_id: [i for i in inputs if i in edges] for node_id, inputs in edges.items()}
    try:
        return list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]  # [a, b, …, a], each node an input of the one before
        text = " → ".join(reversed(cycle))  # in the direction data flows
        for node_id in dict.fromkeys(cycle):
            problems.append((f"nodes.{node_id}.inputs", f"cycle: {text}"))
        return []


def _check_cases(wf: Workflow, case_problems: CaseChecker, problems: list[Problem]) -> None:
    for node in wf.nodes.values():
        if node.type != "solver":
            continue
        doc, origins = wf.case_document(node.id, name=node.id)
        for volume in doc["materials"]:  # two material nodes naming one volume
            owners = [m.id for m in wf.inputs_of(node.id, "material") if volume in m.config.materials]
            if len(owners) > 1:
                problems.append((f"nodes.{owners[1]}.config.materials.{volume}",
                                 f"volume {volume!r} has a material from node {owners[0]!r} already"))
        for path, message in case_problems(doc):
            problems.append((node_path(path, origins), message))


def parse_workflow(data: Any, *, case_problems: CaseChecker = check_case_document) -> Workflow:
    """A validated Workflow from ``{"nodes": [...]}``; WorkflowValidationError lists every problem.

    Checked in this order, each step only when the ones before found nothing it needs:
    the nodes (ids, types, configs), the edges (unknown inputs, input rules, cycles), then
    each solver's assembled case through `case_problems` (default: parse_case with the
    built-in materials; the portal passes one that knows the owner's custom materials).
    """
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise WorkflowValidationError([("nodes", "required: a list of nodes")])
    raw_nodes = data["nodes"]
    problems: list[Problem] = [(key, "unknown field") for key in sorted(set(data) - {"nodes"})]
    if not raw_nodes:
        problems.append(("nodes", "a workflow needs at least one node"))
    if len(raw_nodes) > MAX_NODES:
        raise WorkflowValidationError([("nodes", f"at most {MAX_NODES} nodes (got {len(raw_nodes)})")])
    nodes: dict[str, Node] = {}
    edges: dict[str, list[str]] = {}  # every usable id -> its inputs, whether its config parsed or not
    for index, raw in enumerate(raw_nodes):
        prefix = _node_prefix(raw, index, set(edges))
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str) and raw_id in edges:
            problems.append((f"{prefix}.id", f"duplicate node id {raw_id!r}"))
            continue
        node = _parse_node(raw, prefix, problems)
        if isinstance(raw_id, str) and NODE_ID.match(raw_id):
            inputs = raw.get("inputs", [])
            edges[raw_id] = [i for i in inputs if isinstance(i, str)] if isinstance(inputs, list) else []
        if node is not None:
            nodes[node.id] = node
    _check_inputs(nodes, edges, problems)
    order = _order(edges, problems)
    if not problems:
        _check_cases(Workflow(nodes, order), case_problems, problems)
    if problems:
        raise WorkflowValidationError(problems)
    return Workflow(nodes, order)


# --- walking a workflow --------------------------------------------------------------------
def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class NodeState:
    status: NodeStatus = NodeStatus.PENDING
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    cause: str | None = None  # the failed node a skipped node waited for

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason, "result": self.result,
                "started_at": self.started_at, "finished_at": self.finished_at, "cause": self.cause}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> NodeState:
        data = data or {}
        return cls(NodeStatus(data.get("status", "pending")), data.get("reason"), dict(data.get("result") or {}),
                   data.get("started_at"), data.get("finished_at"), data.get("cause"))


#: execute(node, results of its inputs by id, the node's state (result: saved partial work)) -> result
Execute = Callable[[Node, dict[str, dict[str, Any]], NodeState], dict[str, Any]]
#: on_change(node id, its state) after every transition
OnChange = Callable[[str, NodeState], None]


class Stopped(Exception):
    """Raised by an `execute` when the workflow is cancelled: the node and the rest end ``cancelled``."""


class Suspended(Exception):
    """Raised by an `execute` when its host stops: run_nodes lets it through and the node
    stays ``running`` with its saved partial result, to be resumed."""


def run_nodes(wf: Workflow, states: dict[str, NodeState], execute: Execute, on_change: OnChange, *,
              cancelled: Callable[[], bool] = lambda: False) -> NodeStatus:
    """Walk `wf` in topological order; the workflow's outcome (COMPLETED, FAILED or CANCELLED).

    Completed nodes in `states` are kept (a resumed workflow); a node left ``running`` is
    executed again with its saved partial `result` (e.g. the id of the run it waits for).
    NodeFailed (or any exception) fails the node; `Stopped` cancels it and the rest.
    """
    for node_id in wf.order:
        state = states.setdefault(node_id, NodeState())
        if state.status.is_final:
            continue
        node = wf.nodes[node_id]
        blocked = [i for i in node.inputs if states[i].status is not NodeStatus.COMPLETED]
        if blocked:
            first = states[blocked[0]]
            cause = first.cause or blocked[0]
            status = NodeStatus.CANCELLED if states[cause].status is NodeStatus.CANCELLED else NodeStatus.SKIPPED
            _finish(state, status, f"not run: node {cause!r} ({wf.nodes[cause].type}) "
                                   f"{states[cause].status.value}", cause=cause)
            on_change(node_id, state)
            continue
        if cancelled() and state.status is not NodeStatus.RUNNING:  # a resumed node cancels its own work
            _finish(state, NodeStatus.CANCELLED, "cancelled on request")
            on_change(node_id, state)
            continue
        state.status, state.reason, state.started_at = NodeStatus.RUNNING, None, state.started_at or now_iso()
        on_change(node_id, state)
        try:
            result = execute(node, {i: states[i].result for i in node.inputs}, state)
        except Suspended:
            raise
        except Stopped:
            _finish(state, NodeStatus.CANCELLED, "cancelled on request")
        except NodeFailed as exc:
            _finish(state, NodeStatus.FAILED, str(exc))
        except Exception as exc:  # a bug or an unexpected service error: the node fails, the walk goes on
            _finish(state, NodeStatus.FAILED, f"{type(exc).__name__}: {exc}")
        else:
            state.result = dict(result or {})
            _finish(state, NodeStatus.COMPLETED, None)
        on_change(node_id, state)
    return outcome(states.values())


def outcome(states: Iterable[NodeState]) -> NodeStatus:
    statuses = {s.status for s in states}
    if NodeStatus.FAILED in statuses:
        return NodeStatus.FAILED
    if NodeStatus.CANCELLED in statuses:
        return NodeStatus.CANCELLED
    return NodeStatus.COMPLETED


def _finish(state: NodeState, status: NodeStatus, reason: str | None, cause: str | None = None) -> None:
    state.status, state.reason, state.cause = status, reason, cause
    state.finished_at = now_iso()


__all__ = ["CONFIG_MODELS", "INPUT_RULES", "NODE_TYPES", "Node", "NodeFailed", "NodeState", "NodeStatus",
           "Stopped", "Suspended", "Workflow", "WorkflowValidationError", "check_case_document", "node_path", "outcome",
           "parse_workflow", "run_nodes"]
