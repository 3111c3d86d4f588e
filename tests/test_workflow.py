"""weldsim_hpc.workflow: validating a DAG of steps (every problem tied to its node) and
walking it in topological order (a failed node's dependants skipped, naming it).

The DAG is the tab-weld example at its ci preset split into steps; the walk tests use
plain callbacks in place of the portal's services (`run_nodes` knows nothing else).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from weldsim_hpc.case_io import apply_preset, parse_case, read_case_data
from weldsim_hpc.workflow import (NodeFailed, NodeState, NodeStatus, Stopped, Suspended, WorkflowValidationError,
                                  node_path, parse_workflow, run_nodes)

from .executors._local_helpers import THERMAL


def tab_weld_nodes() -> list[dict[str, Any]]:
    spec = apply_preset(read_case_data(THERMAL), "ci")
    return [
        {"id": "geo", "type": "geometry", "config": spec["geometry"]},
        {"id": "mesh", "type": "mesh", "config": spec["mesh"], "inputs": ["geo"]},
        {"id": "mat", "type": "material", "config": {"materials": spec["materials"]}},
        {"id": "bcs", "type": "boundary_condition", "config": {"boundary_conditions": spec["boundary_conditions"]}},
        {"id": "solve", "type": "solver", "inputs": ["mesh", "mat", "bcs"],
         "config": {k: spec[k] for k in ("analysis", "weld", "time", "thermal", "probes")}},
        {"id": "post", "type": "post_process", "inputs": ["solve"],
         "config": {"metrics": ["T_max_K", "probe.weld_centre.temperature_K"], "bounds": {"T_max_K": {"min": 300}}}},
    ]


def problems_of(nodes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    with pytest.raises(WorkflowValidationError) as info:
        parse_workflow({"nodes": nodes})
    return info.value.problems


def changed(change) -> list[dict[str, Any]]:
    nodes = copy.deepcopy(tab_weld_nodes())
    change({n["id"]: n for n in nodes}, nodes)
    return nodes


# --- validation ------------------------------------------------------------------------------

def test_the_tab_weld_dag_is_valid_and_ordered_and_its_case_is_the_example():
    wf = parse_workflow({"nodes": tab_weld_nodes()})
    order = wf.order
    assert sorted(order) == sorted(n["id"] for n in tab_weld_nodes())
    for node in wf.nodes.values():  # every node after its inputs
        assert all(order.index(i) < order.index(node.id) for i in node.inputs)
    doc, _ = wf.case_document("solve", name="tab")
    spec = apply_preset(read_case_data(THERMAL), "ci")
    assert parse_case(doc) == parse_case({**spec, "name": "tab"})  # the same case as the example's
    assert wf.dependants("geo") == {"mesh", "solve", "post"}
    assert wf.dependants("post") == set()


def test_a_cycle_is_reported_on_every_node_in_it():
    nodes = changed(lambda by_id, _: by_id["geo"].update(inputs=["mesh"]))
    problems = problems_of(nodes)
    cycle = [(p, m) for p, m in problems if m.startswith("cycle")]
    assert {p for p, _ in cycle} == {"nodes.geo.inputs", "nodes.mesh.inputs"}
    assert all("geo" in m and "mesh" in m for _, m in cycle)
    # and a geometry node takes no inputs at all
    assert ("nodes.geo.inputs", "a geometry node takes no mesh input (its inputs: none)") in problems


def test_a_longer_cycle_and_a_self_loop():
    nodes = changed(lambda by_id, _: (by_id["mesh"].update(inputs=["geo", "post"])))
    problems = problems_of(nodes)
    assert {p for p, m in problems if m.startswith("cycle")} == {"nodes.mesh.inputs", "nodes.solve.inputs",
                                                                    "nodes.post.inputs"}
    problems = problems_of(changed(lambda by_id, _: by_id["mat"].update(inputs=["mat"])))
    assert ("nodes.mat.inputs", "cycle: mat → mat") in problems


@pytest.mark.parametrize("change, path, words", [
    (lambda b: b["mesh"].update(inputs=[]), "nodes.mesh.inputs", "needs one geometry input (got none)"),
    (lambda b: b["solve"].update(inputs=["mesh", "mat"]), "nodes.solve.inputs",
     "needs at least 1 boundary_condition input (got none)"),
    (lambda b: b["solve"].update(inputs=["mat", "bcs"]), "nodes.solve.inputs", "needs one mesh input"),
    (lambda b: b["post"].update(inputs=[]), "nodes.post.inputs", "needs one solver input"),
    (lambda b: b["post"].update(inputs=["solve", "nowhere"]), "nodes.post.inputs", "unknown node 'nowhere'"),
    (lambda b: b["mesh"].update(inputs=["geo", "mat"]), "nodes.mesh.inputs", "takes no material input"),
])
def test_missing_unknown_and_wrong_inputs_name_the_node(change, path, words):
    problems = problems_of(changed(lambda by_id, _: change(by_id)))
    assert any(p == path and words in m for p, m in problems), problems


def test_a_free_free_modal_solver_needs_no_boundary_conditions():
    nodes = [{"id": "horn", "type": "geometry",
              "config": {"kind": "stepped", "length_input_m": 0.06085, "length_output_m": 0.06085,
                         "diameter_input_m": 0.04, "diameter_output_m": 0.02, "fillet_radius_m": 0.004}},
             {"id": "m", "type": "mesh", "config": {"size_m": 0.0075, "curvature_segments": 12}, "inputs": ["horn"]},
             {"id": "ti", "type": "material", "config": {"materials": {"horn": "ti6al4v"}}},
             {"id": "modal", "type": "solver", "inputs": ["m", "ti"],
              "config": {"analysis": "modal", "solver": {"target_frequency_Hz": 20000.0, "modes_wanted": 12}}}]
    assert parse_workflow({"nodes": nodes}).order[-1] == "modal"
    nodes[3]["config"]["analysis"] = "static_structural"
    assert any(p == "nodes.modal.inputs" and "boundary_condition" in m for p, m in problems_of(nodes))


@pytest.mark.parametrize("change, path, words", [
    # each node's own model
    (lambda b: b["geo"]["config"].update(n_foils=0), "nodes.geo.config.n_foils", "greater than or equal to 1"),
    (lambda b: b["geo"]["config"].update(kind="banana"), "nodes.geo.config", "banana"),
    (lambda b: b["mesh"]["config"].update(curvature_segments=2), "nodes.mesh.config.curvature_segments",
     "greater than or equal to 6"),
    (lambda b: b["bcs"]["config"]["boundary_conditions"][2].update(h_W_m2K=-1),
     "nodes.bcs.config.boundary_conditions[2].h_W_m2K", "greater than 0"),
    (lambda b: b["bcs"]["config"]["boundary_conditions"][1].update(value="__import__('os')"),
     "nodes.bcs.config.boundary_conditions[1].value", ""),
    (lambda b: b["solve"]["config"].update(analysis="magic"), "nodes.solve.config.analysis", "thermal_steady"),
    (lambda b: b["solve"]["config"].update(solver={"ranks": 0}), "nodes.solve.config.solver.ranks", ""),
    (lambda b: b["post"]["config"].update(metrics=["T_max_F"]), "nodes.post.config.metrics[0]", "unknown metric"),
    (lambda b: b["post"]["config"].update(bounds={"T_max_K": {"min": 400, "max": 300}}),
     "nodes.post.config.bounds", "min (400) is above max (300)"),
    (lambda b: b["mat"]["config"].update(materials={}), "nodes.mat.config.materials", "at least 1"),
    (lambda b: b["mat"].update(colour="red"), "nodes.mat.colour", "unknown field"),
    (lambda b: b["mat"].update(type="glue"), "nodes.mat.type", "unknown node type 'glue'"),
    # the solver's assembled case, checked as a run checks it, traced back to the node at fault
    (lambda b: b["bcs"]["config"]["boundary_conditions"][1].update(boundary="anvil_bottom"),
     "nodes.bcs.config.boundary_conditions[1].boundary", "unknown boundary 'anvil_bottom'"),
    (lambda b: b["mat"]["config"]["materials"].update(tab="unobtainium"), "nodes.mat.config.materials.tab",
     "unknown material 'unobtainium'"),
    (lambda b: b["mat"]["config"]["materials"].pop("tab"), "nodes.mat.config.materials",
     "no material for volume 'tab'"),
    (lambda b: b["solve"]["config"].pop("time"), "nodes.solve.config.time", "needs the [time] section"),
    (lambda b: b["mesh"]["config"].update(size_m=1e-5, refine_size_m=1e-5), "nodes.mesh.config", "cells"),
])
def test_bad_node_configurations_name_the_node_and_field(change, path, words):
    problems = problems_of(changed(lambda by_id, _: change(by_id)))
    assert any(p == path and words in m for p, m in problems), problems


def test_node_ids_duplicates_and_shape():
    assert problems_of([]) == [("nodes", "a workflow needs at least one node")]
    with pytest.raises(WorkflowValidationError) as info:
        parse_workflow({"steps": []})
    assert info.value.problems == [("nodes", "required: a list of nodes")]
    nodes = tab_weld_nodes() + [{"id": "geo", "type": "geometry", "config": {}}]
    assert ("nodes[6].id", "duplicate node id 'geo'") in problems_of(nodes)
    nodes = tab_weld_nodes() + [{"id": "../x", "type": "material", "config": {"materials": {"a": "d2"}}}]
    assert any(p == "nodes[6].id" for p, _ in problems_of(nodes))
    nodes = tab_weld_nodes() + ["not a node"]
    assert any(p == "nodes[6]" for p, _ in problems_of(nodes))


def test_two_material_nodes_for_one_volume():
    def change(by_id, nodes):
        nodes.append({"id": "mat2", "type": "material", "config": {"materials": {"tab": "ni200"}}})
        by_id["solve"]["inputs"].append("mat2")
    problems = problems_of(changed(change))
    assert ("nodes.mat2.config.materials.tab", "volume 'tab' has a material from node 'mat' already") in problems


def test_node_path_maps_case_paths_to_nodes():
    origins = {"": "nodes.s.config", "geometry": "nodes.g.config", "mesh": "nodes.m.config",
               "boundary_conditions[3]": "nodes.b2.config.boundary_conditions[0]",
               "materials.tab": "nodes.mat.config.materials.tab",
               "custom_materials.mine": "nodes.mat.config.materials.tab"}
    assert node_path("boundary_conditions[3].value", origins) == "nodes.b2.config.boundary_conditions[0].value"
    assert node_path("geometry.length_m", origins) == "nodes.g.config.length_m"
    assert node_path("materials.tab", origins) == "nodes.mat.config.materials.tab"
    assert node_path("custom_materials.mine.density_kg_m3", origins) == "nodes.mat.config.materials.tab"
    assert node_path("time.dt_s", origins) == "nodes.s.config.time.dt_s"
    assert node_path("", origins) == "nodes.s.config"
    assert node_path("meshy", origins) == "nodes.s.config.meshy"  # a prefix only at a path boundary


# --- walking ---------------------------------------------------------------------------------

def walk(nodes, fail: dict[str, Exception] | None = None, states=None, cancelled=lambda: False):
    """run_nodes with callbacks that record the calls; `fail`: node id -> what it raises."""
    wf = parse_workflow({"nodes": nodes})
    states = {} if states is None else states
    calls: list[str] = []
    changes: list[tuple[str, str]] = []

    def execute(node, inputs, state):
        calls.append(node.id)
        assert set(inputs) == set(node.inputs)
        assert all(inputs[i] == {"made_by": i} for i in node.inputs)  # results flow along the edges
        if fail and node.id in fail:
            raise fail[node.id]
        return {"made_by": node.id}

    result = run_nodes(wf, states, execute, lambda i, s: changes.append((i, s.status.value)), cancelled=cancelled)
    return wf, result, states, calls, changes


def test_a_valid_dag_runs_in_order_to_the_end():
    wf, result, states, calls, changes = walk(tab_weld_nodes())
    assert result is NodeStatus.COMPLETED and calls == wf.order
    assert all(s.status is NodeStatus.COMPLETED and s.started_at and s.finished_at for s in states.values())
    assert changes == [(i, s) for i in wf.order for s in ("running", "completed")]


def test_a_failed_node_skips_its_dependants_and_others_go_on():
    wf, result, states, calls, _ = walk(tab_weld_nodes(), fail={"mesh": NodeFailed("gmsh could not mesh it")})
    assert result is NodeStatus.FAILED
    assert states["mesh"].status is NodeStatus.FAILED and states["mesh"].reason == "gmsh could not mesh it"
    for node_id in ("solve", "post"):
        assert states[node_id].status is NodeStatus.SKIPPED
        assert states[node_id].reason == "not run: node 'mesh' (mesh) failed" and states[node_id].cause == "mesh"
    for node_id in ("geo", "mat", "bcs"):  # not dependants of mesh
        assert states[node_id].status is NodeStatus.COMPLETED
    assert "solve" not in calls and "post" not in calls
    # an unexpected error fails the node the same way, with its type in the reason
    _, result, states, _, _ = walk(tab_weld_nodes(), fail={"solve": KeyError("run_id")})
    assert result is NodeStatus.FAILED and states["solve"].reason == "KeyError: 'run_id'"
    assert states["post"].reason == "not run: node 'solve' (solver) failed"


def test_cancelling_and_suspending():
    _, result, states, calls, _ = walk(tab_weld_nodes(), fail={"mesh": Stopped()})
    assert result is NodeStatus.CANCELLED
    assert states["mesh"].status is NodeStatus.CANCELLED
    assert states["solve"].status is NodeStatus.CANCELLED and "node 'mesh' (mesh) cancelled" in states["solve"].reason
    asked = iter([False, False, True, True, True, True])
    _, result, states, calls, _ = walk(tab_weld_nodes(), cancelled=lambda: next(asked))
    assert result is NodeStatus.CANCELLED and len(calls) == 2
    assert [s.reason for s in states.values()].count("cancelled on request") >= 1
    # a resumed node that was running is still handed to its callback when cancelled (it
    # cancels the work it waits for, e.g. its run); the nodes after it are not
    states = {i: NodeState(NodeStatus.COMPLETED, result={"made_by": i}) for i in ("geo", "mesh", "mat", "bcs")}
    states["solve"] = NodeState(NodeStatus.RUNNING, result={"run_id": "abc"})
    _, result, states, calls, _ = walk(tab_weld_nodes(), fail={"solve": Stopped()}, states=states,
                                       cancelled=lambda: True)
    assert calls == ["solve"] and result is NodeStatus.CANCELLED
    assert states["post"].reason == "not run: node 'solve' (solver) cancelled"
    # a host stopping leaves the node running, with its partial result, to be resumed
    states: dict[str, NodeState] = {}
    with pytest.raises(Suspended):
        walk(tab_weld_nodes(), fail={"solve": Suspended()}, states=states)
    assert states["solve"].status is NodeStatus.RUNNING


def test_a_resumed_walk_keeps_finished_nodes():
    wf = parse_workflow({"nodes": tab_weld_nodes()})
    states = {i: NodeState(NodeStatus.COMPLETED, result={"made_by": i}) for i in ("geo", "mesh", "mat", "bcs")}
    states["solve"] = NodeState(NodeStatus.RUNNING, result={"made_by": "solve"})
    _, result, states, calls, _ = walk(tab_weld_nodes(), states=states)
    assert result is NodeStatus.COMPLETED and calls == ["solve", "post"]
    assert wf.order[-2:] == ["solve", "post"]
