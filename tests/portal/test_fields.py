"""Result fields for viewers, read with h5py from REAL runs' results (never dolfinx).

Module-scoped real runs through the portal's hosted agent (2 ranks, fenicsx under mpirun,
own SQLite database): the stepped 20 kHz horn, modal (examples/…stepped_modal.toml, ci
preset: one displacement step per mode), and the hot cylinder horn, coupled
thermo-structural (examples/horn_coupled.toml, ci preset: point temperature and
displacement, cellwise von Mises). The HTTP tests decode the binary body with numpy;
decimation is exercised on the real modal results with a small point limit; the service
is also run on PostgreSQL (and SQLite) against a copy of the real run directory.
"""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from portal.extensions import db
from portal.services import cases, fields, projects
from portal.services.errors import Conflict, Invalid, NotFound
from weldsim_hpc.case_io import apply_preset, read_case_data
from weldsim_hpc.run_paths import RunPaths, new_run_id

from ..executors._local_helpers import ROOT
from .helpers import api_client, error_of, make_user
from .runs_helpers import add_run_row, final_row, hosted_runs_app

pytestmark = pytest.mark.timeout(600)

MODAL = ROOT / "examples" / "horn_20khz_stepped_modal.toml"
COUPLED = ROOT / "examples" / "horn_coupled.toml"


def ci_spec(path) -> dict:
    return apply_preset(read_case_data(path), "ci")


@pytest.fixture(scope="module")
def horns(tmp_path_factory):
    """Alice's completed modal and coupled runs, a queued run row without results, Bob."""
    with hosted_runs_app(tmp_path_factory.mktemp("horns")) as app:
        alice, bob = api_client(app, "alice@example.com"), api_client(app, "bob@example.com")
        pid = alice.post("/api/v1/projects", json={"name": "Horns", "application_type": "horn_design"}
                         ).get_json()["id"]
        run_ids, case_ids = {}, []
        for key, path in (("modal", MODAL), ("coupled", COUPLED)):
            case = alice.post(f"/api/v1/projects/{pid}/cases", json={"spec": ci_spec(path)})
            assert case.status_code == 201, case.get_json()
            case_ids.append(case.get_json()["id"])
            run = alice.post(f"/api/v1/projects/{pid}/cases/{case_ids[-1]}/runs", json={"ranks": 2})
            assert run.status_code == 202, run.get_json()
            run_ids[key] = run.get_json()["run_id"]
        for run_id in run_ids.values():
            row = final_row(app, run_id, timeout=400)
            assert row["state"] == "completed", row["reason"]
        with app.app_context():
            run_ids["queued"] = add_run_row(db.session, pid, case_ids[0], new_run_id()).run_id
            db.session.remove()
        yield {"app": app, "alice": alice, "bob": bob, "runs": run_ids, "runs_root": app.extensions["weldsim"].runs_root}


def get_field(client, run_id: str, name: str, query: str = ""):
    answer = client.get(f"/api/v1/runs/{run_id}/results/field/{name}{query}")
    assert answer.status_code == 200, answer.get_json()
    assert answer.mimetype == "application/octet-stream"
    return fields.decode(answer.data)


def check_layout(body: bytes) -> None:
    """The documented layout: uint32 LE length, JSON, arrays at 4-aligned offsets, no gaps."""
    (length,) = struct.unpack_from("<I", body)
    header = json.loads(body[4:4 + length].decode())
    position = 4 + length
    assert position % 4 == 0
    for spec in header["arrays"].values():
        assert spec["offset"] == position and spec["offset"] % 4 == 0
        assert spec["nbytes"] == int(np.prod(spec["shape"])) * 4 and spec["dtype"] in ("<f4", "<i4")
        position += spec["nbytes"]
    assert position == len(body)


def test_the_modal_listing_names_modes_with_frequencies(horns):
    alice, run_id = horns["alice"], horns["runs"]["modal"]
    answer = alice.get(f"/api/v1/runs/{run_id}/results/fields")
    assert answer.status_code == 200, answer.get_json()
    listing = answer.get_json()
    modes_json = json.loads((RunPaths.for_id(horns["runs_root"], run_id).results_dir / "modes.json").read_text())
    assert listing["analysis"] == "modal" and listing["cell_type"] == "tetra" and listing["length_unit"] == "m"
    assert listing["working_mode"] == modes_json["working_mode"] and listing["max_points"] == 200_000
    (shape,) = listing["fields"]
    assert shape["name"] == "displacement" and shape["location"] == "point" and shape["components"] == 3
    assert shape["unit"] == fields.MODE_SHAPE_UNIT and shape["steps"] is None
    assert shape["url"] == f"/api/v1/runs/{run_id}/results/field/displacement"
    assert [m["mode"] for m in shape["modes"]] == [m["index"] for m in modes_json["modes"]]
    assert [m["frequency_Hz"] for m in shape["modes"]] == [m["frequency_Hz"] for m in modes_json["modes"]]
    working = next(m for m in shape["modes"] if m["working"])
    assert working["mode_class"] == "longitudinal" and 19e3 < working["frequency_Hz"] < 21e3


def test_the_working_mode_decodes_to_the_stated_shapes(horns):
    alice, run_id = horns["alice"], horns["runs"]["modal"]
    listing = alice.get(f"/api/v1/runs/{run_id}/results/fields").get_json()
    raw = alice.get(f"/api/v1/runs/{run_id}/results/field/displacement")
    check_layout(raw.data)
    header, arrays = fields.decode(raw.data)
    assert header["format"] == fields.FORMAT and header["run_id"] == run_id and header["field"] == "displacement"
    assert header["mode"]["mode"] == listing["working_mode"] and header["mode"]["working"] and header["step"] is None
    n, m = listing["n_points"], listing["n_cells"]
    assert arrays["points"].shape == (n, 3) and arrays["cells"].shape == (m, 4) and arrays["values"].shape == (n, 3)
    assert {k: tuple(v["shape"]) for k, v in header["arrays"].items()} == {k: a.shape for k, a in arrays.items()}
    assert n <= fields.MAX_POINTS and header["decimation"]["decimated"] is False
    assert arrays["cells"].min() == 0 and arrays["cells"].max() == n - 1
    values = arrays["values"]
    assert np.isfinite(values).all() and np.abs(values).max() > 0
    assert header["range"]["max_magnitude"] == pytest.approx(np.linalg.norm(values, axis=1).max(), rel=1e-6)
    z = arrays["points"][:, 2]
    assert z.min() == pytest.approx(0, abs=1e-9) and z.max() == pytest.approx(0.1217, rel=1e-4)
    # longitudinal: axial motion dominates, and the two ends move in opposite directions
    assert np.abs(values[:, 2]).max() > 5 * np.abs(values[:, :2]).max()
    assert values[z < 1e-6, 2].mean() * values[z > z.max() - 1e-6, 2].mean() < 0

    first_header, first = get_field(alice, run_id, "displacement", "?mode=1")
    assert first_header["mode"]["mode"] == 1 and not first_header["mode"]["working"]
    assert np.array_equal(first["points"], arrays["points"]) and not np.array_equal(first["values"], values)


def test_the_surface_is_closed_and_oriented_outwards(horns):
    alice, run_id = horns["alice"], horns["runs"]["modal"]
    _, volume = get_field(alice, run_id, "displacement")
    header, surface = get_field(alice, run_id, "displacement", "?surface=true")
    assert header["cell_type"] == "triangle" and header["surface"] is True
    tri, pts = surface["cells"].astype(np.int64), surface["points"].astype(np.float64)
    assert tri.shape[1] == 3 and len(pts) < len(volume["points"])
    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    _, count = np.unique(edges, axis=0, return_counts=True)
    assert (count == 2).all()  # closed: every edge between exactly two triangles
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    enclosed = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6  # divergence theorem: > 0 if outwards
    p, t = volume["points"].astype(np.float64), volume["cells"].astype(np.int64)
    tets = np.abs(np.einsum("ij,ij->i", p[t[:, 1]] - p[t[:, 0]],
                            np.cross(p[t[:, 2]] - p[t[:, 0]], p[t[:, 3]] - p[t[:, 0]]))).sum() / 6
    assert enclosed == pytest.approx(tets, rel=1e-4)
    # each surface point carries the value of the same point of the volume
    lookup = {tuple(q): i for i, q in enumerate(volume["points"])}
    same = [lookup[tuple(q)] for q in surface["points"]]
    assert np.array_equal(surface["values"], volume["values"][same])


def test_decimation_keeps_cells_points_and_values_consistent(horns):
    paths = RunPaths.for_id(horns["runs_root"], horns["runs"]["modal"])
    full_header, full = fields.load_field(paths, "displacement")
    header, small = fields.load_field(paths, "displacement", max_points=300)
    d = header["decimation"]
    assert d["decimated"] is True and d["cell_stride"] > 1 and d["max_points"] == 300
    assert d["original"] == {"points": len(full["points"]), "cells": len(full["cells"])}
    assert 0 < len(small["points"]) <= 300 and len(small["values"]) == len(small["points"])
    assert np.array_equal(small["cells"], _renumbered(full, small, d["cell_stride"]))
    lookup = {tuple(q): i for i, q in enumerate(full["points"])}
    same = [lookup[tuple(q)] for q in small["points"]]
    assert np.array_equal(small["values"], full["values"][same])
    assert set(np.unique(small["cells"])) == set(range(len(small["points"])))  # no unused point
    # the smallest stride that fits: one less does not
    assert full_header["decimation"]["cell_stride"] == 1
    assert len(np.unique(full["cells"][::d["cell_stride"] - 1])) > 300
    body = fields.encode(header, small)
    check_layout(body)


def _renumbered(full, small, stride):
    """The kept cells (every stride-th) of the full mesh in the small one's numbering."""
    kept = full["cells"][::stride]
    lookup = {tuple(q): i for i, q in enumerate(small["points"])}
    index = {i: lookup[tuple(full["points"][i])] for i in np.unique(kept)}
    return np.vectorize(index.get)(kept).astype(np.int32)


def test_a_coupled_run_has_point_and_cell_fields_with_units(horns):
    alice, run_id = horns["alice"], horns["runs"]["coupled"]
    listing = alice.get(f"/api/v1/runs/{run_id}/results/fields").get_json()
    described = {f["name"]: (f["location"], f["components"], f["unit"]) for f in listing["fields"]}
    assert described == {"temperature": ("point", 1, "K"), "displacement": ("point", 3, "m"),
                         "von_mises": ("cell", 1, "Pa")}
    assert listing["working_mode"] is None
    assert all(f["modes"] is None and len(f["steps"]) == 1 for f in listing["fields"])

    header, temperature = get_field(alice, run_id, "temperature", "?step=0")
    assert header["step"] == {"index": 0, "t": listing["fields"][0]["steps"][0]["t"], "count": 1}
    assert header["mode"] is None and temperature["values"].shape == (listing["n_points"],)
    assert 290 < temperature["values"].min() < temperature["values"].max() < 430  # 303.15 K … 423.15 K
    header, stress = get_field(alice, run_id, "von_mises")
    assert header["location"] == "cell" and stress["values"].shape == (listing["n_cells"],)
    assert np.isfinite(stress["values"]).all() and stress["values"].min() >= 0 and stress["values"].max() > 1e5
    header, skin = get_field(alice, run_id, "von_mises", "?surface=true")
    assert skin["values"].shape == (len(skin["cells"]),) and set(skin["values"]) <= set(stress["values"])

    assert alice.get(f"/api/v1/runs/{run_id}/results/field/temperature?step=1").status_code == 404
    answer = alice.get(f"/api/v1/runs/{run_id}/results/field/temperature?mode=1")
    assert answer.status_code == 422 and error_of(answer)["field"] == "mode"


def test_unknown_fields_modes_and_bad_queries_are_clear(horns):
    alice, runs = horns["alice"], horns["runs"]
    base = f"/api/v1/runs/{runs['modal']}/results"
    for url, status, field, words in (
            (f"{base}/field/temperature", 404, None, "has no field 'temperature' (fields: displacement)"),
            (f"{base}/field/displacement?mode=99", 404, None, "has no mode 99"),
            (f"{base}/field/displacement?step=0", 422, "step", "use mode=k"),
            (f"{base}/field/displacement?mode=0", 422, "mode", ""),
            (f"{base}/field/displacement?mode=x", 422, "mode", ""),
            (f"{base}/field/displacement?colour=red", 422, "colour", "unknown field"),
            (f"/api/v1/runs/{runs['queued']}/results/fields", 404, None, "has no field output"),
            (f"/api/v1/runs/{runs['queued']}/results/field/displacement", 404, None, "has no field output"),
            ("/api/v1/runs/nosuchrun000/results/fields", 404, None, "not found"),
            ("/api/v1/runs/..%2F..%2Fetc/results/fields", 404, None, "")):
        answer = alice.get(url)
        assert answer.status_code == status, (url, answer.get_json())
        error = error_of(answer)
        assert error["field"] == field and words in error["message"], (url, error)


def test_another_user_gets_404_and_no_credentials_401(horns):
    bob, run_id = horns["bob"], horns["runs"]["modal"]
    for url in (f"/api/v1/runs/{run_id}/results/fields", f"/api/v1/runs/{run_id}/results/field/displacement"):
        answer = bob.get(url)
        assert answer.status_code == 404 and error_of(answer)["message"] == f"run {run_id} not found"
        assert bob.client.get(url).status_code == 401
    assert horns["alice"].get(f"/api/v1/runs/{run_id}/results/fields").status_code == 200


# --- the service on SQLite and PostgreSQL, on a copy of the real modal run -------------------------

def test_service_reads_a_copied_real_run_and_checks_access(db_session, horns, tmp_path):
    alice, bob = make_user(db_session, "alice@example.com"), make_user(db_session, "bob@example.com")
    project = projects.create_project(db_session, alice, name="Horns", application_type="horn_design")
    case = cases.create_case(db_session, alice, project.id, spec=ci_spec(MODAL), storage_root=tmp_path)
    run_id = add_run_row(db_session, project.id, case.id, new_run_id(), state="completed").run_id
    runs_root = tmp_path / "runs"
    source = RunPaths.for_id(horns["runs_root"], horns["runs"]["modal"])
    shutil.copytree(source.results_dir, RunPaths.for_id(runs_root, run_id).results_dir)
    shutil.copy(source.case_json, RunPaths.for_id(runs_root, run_id).case_json)

    listing = fields.list_fields(db_session, alice, run_id, runs_root=runs_root)
    assert listing["run_id"] == run_id and [f["name"] for f in listing["fields"]] == ["displacement"]
    header, arrays = fields.field_data(db_session, alice, run_id, "displacement", runs_root=runs_root, mode=1)
    assert header["mode"]["mode"] == 1 and arrays["values"].shape == (listing["n_points"], 3)
    with pytest.raises(Invalid) as info:
        fields.field_data(db_session, alice, run_id, "displacement", runs_root=runs_root, step=0)
    assert info.value.field == "step"
    for call in (lambda: fields.list_fields(db_session, bob, run_id, runs_root=runs_root),
                 lambda: fields.field_data(db_session, bob, run_id, "displacement", runs_root=runs_root),
                 lambda: fields.field_data(db_session, alice, run_id, "nope", runs_root=runs_root)):
        with pytest.raises(NotFound):
            call()
    # an XDMF pointing outside the results directory is refused, not followed
    xdmf = RunPaths.for_id(runs_root, run_id).fields_xdmf
    xdmf.write_text(xdmf.read_text().replace("fields.h5:/Mesh", "../../../etc/fields.h5:/Mesh"))
    with pytest.raises(Conflict) as info:
        fields.list_fields(db_session, alice, run_id, runs_root=runs_root)
    assert "outside the results directory" in info.value.message
