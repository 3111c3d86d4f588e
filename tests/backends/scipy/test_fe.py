"""The scipy backend's finite elements (no dolfinx, no MPI).

Element integrals and bases, patch tests, P2 exactness, the steady heat source, the
constraint check and the coupled stress-free case. The validation cases (transient slab,
fin, cantilever, 3-2-1 bar, weld energy balance, …) run on both backends, on the same
meshes and at the same tolerances, in tests/mpi/validation/. Meshes here are structured
boxes (tests/backends/scipy/meshes.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from weldsim_hpc.backends.scipy import fe
from weldsim_hpc.backends.scipy.elasticity import NOT_CONSTRAINED_MESSAGE, NotConstrainedError, solve_elasticity
from weldsim_hpc.backends.scipy.thermal import solve_thermal
from weldsim_hpc.case import CaseSpec
from weldsim_hpc.materials import material_from_dict

from .meshes import box_mesh


def solid(E=200e9, nu=0.3, alpha=1.2e-5, k=50.0, rho=7800.0, cp=500.0, yield_Pa=250e6):
    return material_from_dict({
        "id": "test_solid", "name": "test_solid", "density_kg_m3": rho, "youngs_modulus_Pa": E,
        "poisson_ratio": nu, "conductivity_W_mK": k, "specific_heat_J_kgK": cp, "expansion_1_K": alpha,
        "yield_strength_Pa": yield_Pa, "fatigue_strength_Pa": 1e8, "fatigue_cycles": 1e9,
        "loss_factor": 1e-3, "solidus_K": 1500.0})


def make_case(analysis, **fields) -> CaseSpec:
    base = {"name": "test", "analysis": analysis,
            "geometry": {"kind": "block", "length_m": 0.01, "width_m": 0.001, "depth_m": 0.001},
            "materials": {"bar": "d2"}}
    return CaseSpec.model_validate({**base, **fields})


def disp(boundary, ux=None, uy=None, uz=None) -> dict:
    return {"type": "displacement", "boundary": boundary, "value": [ux, uy, uz]}


# --- element integrals ------------------------------------------------------------------
@pytest.mark.parametrize("degree", range(0, 7))
def test_quadrature_is_exact_for_monomials(degree):
    p, w = fe.tet_rule(degree)
    for a, b, c in [(degree, 0, 0), (0, degree // 2, degree - degree // 2), (degree // 3, degree // 3, degree - 2 * (degree // 3))]:
        exact = math.factorial(a) * math.factorial(b) * math.factorial(c) / math.factorial(a + b + c + 3)
        assert (w * p[:, 0] ** a * p[:, 1] ** b * p[:, 2] ** c).sum() == pytest.approx(exact, rel=1e-13)
    q, v = fe.tri_rule(degree)
    exact = math.factorial(degree) / math.factorial(degree + 2)
    assert (v * q[:, 0] ** degree).sum() == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("order", [1, 2])
def test_basis_is_nodal_and_a_partition_of_unity(order):
    nodes = fe.reference_nodes(order)
    N, dN = fe.tet_basis(order, nodes)
    assert np.allclose(N, np.eye(len(nodes)), atol=1e-14)
    xi, _ = fe.tet_rule(3)
    N, dN = fe.tet_basis(order, xi)
    assert np.allclose(N.sum(axis=1), 1.0) and np.allclose(dN.sum(axis=1), 0.0)
    # gradients against finite differences
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd = (fe.tet_basis(order, xi + e)[0] - fe.tet_basis(order, xi - e)[0]) / (2 * h)
        assert np.allclose(fd, dN[:, :, j], atol=1e-8)


@pytest.mark.parametrize("order", [1, 2])
def test_matrices_integrate_polynomials_exactly(order):
    mesh = box_mesh((2, 2, 3), (1.0, 1.0, 1.5))
    V = fe.Space(mesh.points, mesh.cells, order)
    ones = np.ones(V.n_dofs)
    M = V.assemble(V.mass_local(np.ones(mesh.n_cells)))
    K = V.assemble(V.stiffness_local(np.ones(mesh.n_cells)))
    assert ones @ M @ ones == pytest.approx(1.5, rel=1e-14)
    assert np.abs(K @ ones).max() < 1e-13
    x, y, z = V.dof_coords.T
    lin = 2 * x + z
    assert lin @ K @ lin == pytest.approx(5 * 1.5, rel=1e-13)          # ∫|∇(2x+z)|²
    if order == 2:
        quad = x * x                                                 # P2 holds x² exactly
        assert quad @ K @ quad == pytest.approx(4 / 3 * 1.5, rel=1e-13)
        assert quad @ M @ quad == pytest.approx(1.5 / 5, rel=1e-13)
    assert np.isclose(V.load_from_nodal(z).sum(), 1.5**2 / 2)
    facets = fe.Facets(V, mesh.facets, mesh.facet_tags)
    top = facets.select(mesh.groups["z1"][1], True)
    assert facets.area[top].sum() == pytest.approx(1.0) and np.allclose(facets.normal[top], [0, 0, 1])
    assert np.allclose(facets.normal[facets.select(mesh.groups["x0"][1], True)], [-1, 0, 0])
    assert facets.assemble_vector(top, facets.load(top, x), V.n_dofs).sum() == pytest.approx(0.5)


def test_p2_dofs_are_keyed_deterministically():
    mesh = box_mesh((1, 1, 2), (1.0, 1.0, 2.0))
    V = fe.Space(mesh.points, mesh.cells, 2)
    keys = V.dof_keys
    assert (keys[: mesh.n_nodes, 1] == -1).all() and (keys[mesh.n_nodes:, 0] < keys[mesh.n_nodes:, 1]).all()
    assert len(np.unique(keys, axis=0)) == V.n_dofs
    assert np.allclose(V.dof_coords[mesh.n_nodes:], 0.5 * (mesh.points[keys[mesh.n_nodes:, 0]]
                                                          + mesh.points[keys[mesh.n_nodes:, 1]]))
    again = fe.Space(mesh.points, mesh.cells, 2)
    assert (again.cell_dofs == V.cell_dofs).all()


# --- thermal --------------------------------------------------------------------------------
SLAB_L, SLAB_W, T0 = 0.01, 0.001, 300.0


def test_steady_source_p2_is_nodally_exact():
    Q = 2e7
    mesh = box_mesh((1, 1, 6), (SLAB_W, SLAB_W, SLAB_L))
    case = make_case("thermal_steady", element_order=2, solver={"rtol": 1e-12},
                     loads=[{"type": "heat_source", "volume": "bar", "value": Q}],
                     boundary_conditions=[{"type": "temperature", "boundary": b, "value": T0} for b in ("z0", "z1")])
    res = solve_thermal(mesh, case, {"bar": solid(k=100.0)})
    z = np.array([0.13, 0.5, 0.77]) * SLAB_L
    pts = np.stack([np.full_like(z, 0.3 * SLAB_W), np.full_like(z, 0.6 * SLAB_W), z], 1)
    exact = T0 + Q * z * (SLAB_L - z) / 200.0
    assert np.abs(fe.evaluate(res.space, res.temperature, pts) - exact).max() / (exact.max() - T0) < 1e-9
    assert res.heat_input_W == pytest.approx(Q * SLAB_L * SLAB_W**2, rel=1e-12)


# --- elasticity -------------------------------------------------------------------------------
def test_patch_test_uniform_stress():
    """P1 and P2 reproduce a uniform uniaxial stress state exactly (traction on z1)."""
    mesh = box_mesh((2, 2, 3), (1.0, 1.0, 1.5))
    for order in (1, 2):
        case = make_case("static_structural", element_order=order, solver={"rtol": 1e-12},
                         boundary_conditions=[disp("x0", ux=0.0), disp("y0", uy=0.0), disp("z0", uz=0.0),
                                              {"type": "traction", "boundary": "z1", "value": [0, 0, 1e6]}])
        res = solve_elasticity(mesh, case, {"bar": solid()})
        assert np.allclose(res.von_mises_dg0, 1e6, rtol=1e-9)
        assert np.allclose(res.stress_at([[0.3, 0.4, 0.5]])[0], [0, 0, 1e6, 0, 0, 0], atol=1e-3)
        x = res.space.dof_coords
        assert np.allclose(res.displacement[:, 2], 1e6 / 200e9 * x[:, 2], rtol=1e-9, atol=1e-18)


def test_unconstrained_structure_is_refused_with_the_fenicsx_message():
    mesh = box_mesh((2, 1, 1), (0.02, 0.01, 0.01))
    case = make_case("static_structural", boundary_conditions=[disp("x0", ux=0.0), disp("y0", uy=0.0)])
    with pytest.raises(NotConstrainedError) as info:
        solve_elasticity(mesh, case, {"bar": solid()})
    assert str(info.value) == NOT_CONSTRAINED_MESSAGE


def test_coupled_steady_linear_temperature_is_stress_free():
    from weldsim_hpc.backends.scipy.coupled import solve_coupled

    box, T_ref, T1, T2 = (0.05, 0.02, 0.01), 293.15, 300.0, 500.0
    L = box[0]
    b, a_ = (T2 - T1) / L, T1 - T_ref
    alpha = 1.2e-5
    mesh = box_mesh((5, 2, 1), box)
    case = make_case("coupled_thermo_structural", solver={"rtol": 1e-12, "atol": 1e-30}, thermal={"T_ref_K": T_ref},
                     boundary_conditions=[{"type": "temperature", "boundary": "x0", "value": T1},
                                          {"type": "temperature", "boundary": "x1", "value": T2},
                                          disp("y0", uy=0.0), disp("z0", uz=0.0),
                                          disp("x0", ux=f"{-alpha * b / 2!r} * (y*y + z*z)")])
    res = solve_coupled(mesh, case, {"bar": solid()})
    x, y, z = res.structural.space.dof_coords.T
    exact = alpha * np.stack([a_ * x + b * x**2 / 2 - b * (y**2 + z**2) / 2, (a_ + b * x) * y, (a_ + b * x) * z], 1)
    integral = alpha * (a_ * L + b * L**2 / 2)
    assert np.abs(res.structural.displacement - exact).max() / integral < 1e-6
    assert res.max_von_mises_Pa <= 1e-6 * 200e9 * alpha * (T2 - T_ref)
    assert res.thermal.space.order == 1 and res.structural.space.order == 2
