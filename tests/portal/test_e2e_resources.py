"""Issue 8 end to end through HTTP only, against a real `weldsim portal` process (SQLite, the
agent and the geometry jobs hosted in it, runs on 2 ranks through the LocalExecutor):

a parametric 20 kHz stepped horn → mesh (202 → poll → meshed) → preview (output_face) →
a modal case on that geometry version → run → field data of the working mode → the same
horn with both sections 10 % longer, meshed and run → a comparison of the working
frequencies against the first run, whose relative delta is L1/L2 − 1 (f ∝ 1/L when every
length scales: 1-D horn theory is exact for that, the 3-D lateral inertia changes it by a
fraction of a per cent at this slenderness; tolerance 1 %).

The only non-HTTP step is making the account with the portal's CLI. The test process never
imports mpi4py or dolfinx; the tracker fails the test if any process is left behind.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from portal.services.fields import decode

from ..executors._local_helpers import tracker  # noqa: F401
from .test_agent_host import PortalProcess
from .test_e2e_http import EMAIL, PASSWORD, Browser, create_account, horn_ci_spec, instance_env

pytestmark = pytest.mark.timeout(900)

SCALE = 1.1  # the second horn: both sections 10 % longer
MESH_OPTIONS = {"size_m": 0.0075}  # the example's ci mesh size


def wait_until(web: Browser, path: str, done, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body, _ = web.request("GET", path)
        assert status == 200, body
        if done(body):
            return body
        assert time.monotonic() < deadline, f"{what}: still {body.get('status') or body.get('state')} after {timeout} s"
        time.sleep(0.3)


def meshed_horn(web: Browser, project_id: int, geometry: dict[str, Any]) -> dict:
    """A parametric version of `geometry`, generated and meshed; the version."""
    status, created, headers = web.request("POST", f"/api/v1/projects/{project_id}/geometries", {"params": geometry})
    assert status == 202 and created["status"] == "generating", created
    assert headers["Location"] == created["status_url"]
    generated = wait_until(web, created["status_url"], lambda v: v["status"] not in ("generating",), 300, "generation")
    assert generated["status"] == "generated", generated
    status, meshing, _ = web.request("POST", created["status_url"] + "/mesh", {"options": MESH_OPTIONS})
    assert status == 202 and meshing["status"] == "meshing", meshing
    meshed = wait_until(web, created["status_url"], lambda v: v["status"] not in ("meshing",), 300, "meshing")
    assert meshed["status"] == "meshed", meshed
    return meshed


def run_case_on(web: Browser, project_id: int, version: dict, name: str) -> str:
    """A modal case on the geometry version, run on 2 ranks to completion; the run id."""
    spec = horn_ci_spec()
    spec.pop("name")  # the case's name
    spec.pop("geometry")
    spec.pop("probes", None)  # the probe sits on the first horn's weld face
    spec.pop("mesh", None)  # the mesh is the version's
    status, case, _ = web.request("POST", f"/api/v1/projects/{project_id}/cases",
                                  {"name": name, "spec": spec, "geometry_version_id": version["id"]})
    assert status == 201, case
    status, run, _ = web.request("POST", f"/api/v1/projects/{project_id}/cases/{case['id']}/runs", {"ranks": 2})
    assert status == 202, run
    final = wait_until(web, f"/api/v1/runs/{run['run_id']}",
                       lambda r: r["state"] not in ("queued", "running"), 600, f"run {run['run_id']}")
    assert final["state"] == "completed", (final["state"], final["reason"])
    return run["run_id"]


def test_geometry_mesh_preview_case_runs_fields_comparison_over_http(tmp_path, tracker):  # noqa: F811
    env = instance_env(tmp_path)
    tracker.roots.append(Path(env["WELDSIM_INSTANCE_PATH"]) / "runs")
    portal = PortalProcess(env, tmp_path / "portal.log")
    try:
        create_account(env)
        web = Browser(portal.url)
        status, body, _ = web.request("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
        assert status == 200, body
        web.csrf = body["csrf_token"]
        status, project, _ = web.request("POST", "/api/v1/projects", {"name": "Horns", "application_type": "horn_design"})
        assert status == 201, project
        pid = project["id"]

        horn = dict(horn_ci_spec()["geometry"])
        first = meshed_horn(web, pid, horn)
        status, preview, _ = web.request("GET", first["status_url"] + "/preview")
        assert status == 200, preview
        groups = preview["groups"]
        assert "output_face" in groups and "input_face" in groups, groups
        assert len(preview["faces"]) == len(preview["face_groups"]) > 0

        r1 = run_case_on(web, pid, first, "horn L1")
        status, listing, _ = web.request("GET", f"/api/v1/runs/{r1}/results/fields")
        assert status == 200, listing
        status, raw, headers = web.request(
            "GET", f"/api/v1/runs/{r1}/results/field/displacement?mode={listing['working_mode']}", raw=True)
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        header, arrays = decode(raw)
        assert header["mode"]["working"] and header["mode"]["mode"] == listing["working_mode"]
        assert arrays["points"].shape[1] == 3 and arrays["values"].shape == arrays["points"].shape
        assert 0 < len(arrays["points"]) <= 200_000 and abs(arrays["values"]).max() > 0
        length_1 = horn["length_input_m"] + horn["length_output_m"]
        assert arrays["points"][:, 2].max() == pytest.approx(length_1, rel=1e-5)

        longer = {**horn, "length_input_m": horn["length_input_m"] * SCALE,
                  "length_output_m": horn["length_output_m"] * SCALE}
        second = meshed_horn(web, pid, longer)
        assert second["version"] == first["version"] + 1
        r2 = run_case_on(web, pid, second, "horn L2")

        status, comparison, _ = web.request("POST", f"/api/v1/projects/{pid}/comparisons",
                                            {"name": "length", "run_ids": [r1, r2], "metric_names": ["f_working_Hz"],
                                             "baseline_run_id": r1})
        assert status == 201, comparison
        rows = {r["run_id"]: r for r in comparison["results"]}
        entry = rows[r2]["metrics"]["f_working_Hz"]
        assert entry["unit"] == "Hz" and rows[r1]["is_baseline"] and comparison["baseline_run_id"] == r1
        assert 1.0 + entry["relative_delta"] == pytest.approx(1.0 / SCALE, rel=0.01), entry
        assert entry["delta"] == pytest.approx(entry["value"] - rows[r1]["metrics"]["f_working_Hz"]["value"])
        assert portal.finish(signal.SIGTERM) == 0
    finally:
        if portal.proc.poll() is None:
            portal.finish(signal.SIGKILL)
