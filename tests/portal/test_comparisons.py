"""Comparisons: the service on SQLite and PostgreSQL, and over HTTP with REAL runs.

Real runs (module-scoped, shared by the HTTP tests): two free-free modal runs of uniform
Ti-6Al-4V bars (Ø20 mm) of lengths L1 = 125 mm and L2 = 140 mm, through the portal's
hosted agent on 2 ranks. A free-free bar's first longitudinal mode is f = c/(2L), so the
comparison's relative delta of f_working_Hz (run 2 against run 1) must be L1/L2 − 1
(= −10.71 %); it is asserted within 2 % of that value (the 3-D Rayleigh correction for
this slenderness changes the ratio by well under 0.1 %). The comparison is created while
run 2 is still unfinished (null numbers with a note), then refreshed once it has finished.
The field data of the working mode is fetched and decoded too. The test process never
imports mpi4py or dolfinx.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from portal.extensions import db
from portal.models import Comparison, ComparisonResult, Metric, Run, User
from portal.services import cases, comparisons, projects
from portal.services.errors import Invalid, NotFound
from portal.services.fields import MAX_POINTS, decode
from weldsim_hpc.materials import get_material
from weldsim_hpc.run_paths import new_run_id

from .helpers import api_client, counts, error_of, make_user, table_counts, thermal_spec
from .runs_helpers import add_run_row, final_row, hosted_runs_app

pytestmark = pytest.mark.timeout(600)

L1, L2 = 0.125, 0.140
DIAMETER = 0.02
TOLERANCE = 0.02  # of the expected relative delta L1/L2 - 1


def bar_spec(length: float) -> dict:
    """A free-free modal case of a uniform Ti-6Al-4V bar, the target at c/(2L)."""
    c = get_material("ti6al4v").bar_sound_speed_m_s
    return {"name": f"bar {length * 1e3:.0f} mm", "analysis": "modal",
            "geometry": {"kind": "cylinder", "length_m": length, "diameter_m": DIAMETER},
            "materials": {"horn": "ti6al4v"},
            "solver": {"target_frequency_Hz": round(c / (2 * length)), "modes_wanted": 8},
            "mesh": {"size_m": 0.0075, "curvature_segments": 12}}


def metrics_of(app, run_id: str) -> dict[str, float]:
    with app.app_context():
        try:
            return {m.name: m.value for m in db.session.query(Metric).filter_by(run_id=run_id)}
        finally:
            db.session.remove()


# --- real runs, shared by the HTTP tests ----------------------------------------------------------

@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    """Alice's project with two completed bar runs, a comparison made while run 2 was
    unfinished, a second project of hers and Bob's project with a run row each."""
    with hosted_runs_app(tmp_path_factory.mktemp("bars")) as app:
        alice, bob = api_client(app, "alice@example.com"), api_client(app, "bob@example.com")
        project = alice.post("/api/v1/projects", json={"name": "Bars", "application_type": "horn_design"})
        other = alice.post("/api/v1/projects", json={"name": "Other", "application_type": "horn_design"})
        bobs = bob.post("/api/v1/projects", json={"name": "Bob's", "application_type": "horn_design"})
        pid, other_id, bob_pid = (r.get_json()["id"] for r in (project, other, bobs))
        run_ids = []
        for length in (L1, L2):
            case = alice.post(f"/api/v1/projects/{pid}/cases", json={"spec": bar_spec(length)})
            assert case.status_code == 201, case.get_json()
            run = alice.post(f"/api/v1/projects/{pid}/cases/{case.get_json()['id']}/runs", json={"ranks": 2})
            assert run.status_code == 202, run.get_json()
            run_ids.append(run.get_json()["run_id"])
            if length == L1:
                assert final_row(app, run_ids[0], timeout=300)["state"] == "completed"
        early = alice.post(f"/api/v1/projects/{pid}/comparisons",
                           json={"name": "length sweep", "run_ids": run_ids,
                                 "metric_names": ["f_working_Hz", "max_von_mises_Pa"]})
        assert early.status_code == 201, early.get_json()
        row2 = final_row(app, run_ids[1], timeout=300)
        assert row2["state"] == "completed", row2["reason"]
        with app.app_context():
            other_case = cases.create_case(db.session, db.session.get(User, alice.user_id), other_id,
                                           spec=bar_spec(L1), storage_root=app.extensions["weldsim"].storage_root)
            bob_case = cases.create_case(db.session, db.session.get(User, bob.user_id), bob_pid,
                                         spec=bar_spec(L1), storage_root=app.extensions["weldsim"].storage_root)
            foreign = {"other_project": add_run_row(db.session, other_id, other_case.id, new_run_id()).run_id,
                       "bobs": add_run_row(db.session, bob_pid, bob_case.id, new_run_id()).run_id}
            db.session.remove()
        yield {"app": app, "alice": alice, "bob": bob, "project_id": pid, "other_project_id": other_id,
               "runs": run_ids, "early": early.get_json(), "foreign": foreign}


def test_the_frequency_ratio_of_two_bar_lengths_is_l1_over_l2(bars):
    alice, (r1, r2) = bars["alice"], bars["runs"]
    early = bars["early"]
    assert [row["run_id"] for row in early["results"]] == [r1, r2] and early["baseline_run_id"] == r1
    unfinished = early["results"][1]["metrics"]["f_working_Hz"]
    # made right after submitting run 2, which needs seconds to prepare (gmsh) and solve
    assert unfinished["value"] is None and unfinished["delta"] is None and unfinished["relative_delta"] is None
    assert r2 in unfinished["note"] and "has no metric f_working_Hz" in unfinished["note"]
    assert early["results"][1]["run_state"] in ("queued", "running")

    refreshed = alice.post(f"/api/v1/comparisons/{early['id']}/refresh", json={})
    assert refreshed.status_code == 200, refreshed.get_json()
    body = refreshed.get_json()
    assert [m["name"] for m in body["metrics"]] == ["f_working_Hz", "max_von_mises_Pa"]
    assert [m["unit"] for m in body["metrics"]] == ["Hz", "Pa"]
    base, other = (row["metrics"] for row in body["results"])
    f1, f2 = metrics_of(bars["app"], r1)["f_working_Hz"], metrics_of(bars["app"], r2)["f_working_Hz"]
    c = get_material("ti6al4v").bar_sound_speed_m_s
    assert f1 == pytest.approx(c / (2 * L1), rel=0.03) and f2 == pytest.approx(c / (2 * L2), rel=0.03)
    assert base["f_working_Hz"] == {"value": f1, "unit": "Hz", "delta": 0.0, "relative_delta": 0.0, "note": None}
    assert other["f_working_Hz"]["value"] == f2 and other["f_working_Hz"]["unit"] == "Hz"
    assert other["f_working_Hz"]["delta"] == pytest.approx(f2 - f1)
    expected = L1 / L2 - 1
    assert other["f_working_Hz"]["relative_delta"] == pytest.approx(expected, rel=TOLERANCE)
    # a modal run yields no stress: null numbers and a note, not an error
    missing = other["max_von_mises_Pa"]
    assert missing["value"] is None and missing["delta"] is None and missing["unit"] == "Pa"
    assert "has no metric max_von_mises_Pa" in missing["note"]

    flipped = alice.post(f"/api/v1/comparisons/{early['id']}/refresh", json={"baseline_run_id": r2}).get_json()
    assert flipped["baseline_run_id"] == r2 and [r["run_id"] for r in flipped["results"]] == [r2, r1]
    assert flipped["results"][1]["metrics"]["f_working_Hz"]["relative_delta"] == pytest.approx(L2 / L1 - 1,
                                                                                               rel=TOLERANCE)


def test_create_get_list_refresh_adding_runs_and_delete(bars):
    alice, (r1, r2), pid = bars["alice"], bars["runs"], bars["project_id"]
    made = alice.post(f"/api/v1/projects/{pid}/comparisons", json={"name": "every shared metric", "run_ids": [r1]})
    assert made.status_code == 201, made.get_json()
    comp = made.get_json()
    assert made.headers["Location"] == f"/api/v1/comparisons/{comp['id']}"
    assert comp["metric_names"] == [] and "f_working_Hz" in [m["name"] for m in comp["metrics"]]
    assert len(comp["results"]) == 1 and comp["results"][0]["is_baseline"]

    added = alice.post(f"/api/v1/comparisons/{comp['id']}/refresh", json={"add_run_ids": [r2, r1]})
    assert added.status_code == 200, added.get_json()
    rows = added.get_json()["results"]
    assert [r["run_id"] for r in rows] == [r1, r2] and rows[1]["run_state"] == "completed"
    shared = set(metrics_of(bars["app"], r1)) & set(metrics_of(bars["app"], r2))
    assert set(rows[1]["metrics"]) == shared  # [] compares every metric the runs share
    assert rows[1]["metrics"]["n_cells"]["unit"] == "1"

    got = alice.get(f"/api/v1/comparisons/{comp['id']}")
    assert got.status_code == 200 and got.get_json() == added.get_json()
    listed = alice.get(f"/api/v1/projects/{pid}/comparisons").get_json()
    assert comp["id"] in [c["id"] for c in listed["items"]] and listed["items"][0]["id"] == comp["id"]
    assert alice.delete(f"/api/v1/comparisons/{comp['id']}").status_code == 204
    assert alice.get(f"/api/v1/comparisons/{comp['id']}").status_code == 404
    assert alice.get(f"/api/v1/runs/{r1}").status_code == 200  # the runs stay


def test_field_data_of_the_working_mode(bars):
    alice, r1 = bars["alice"], bars["runs"][0]
    listing = alice.get(f"/api/v1/runs/{r1}/results/fields")
    assert listing.status_code == 200, listing.get_json()
    listing = listing.get_json()
    (shape,) = [f for f in listing["fields"] if f["name"] == "displacement"]
    assert shape["location"] == "point" and shape["components"] == 3 and shape["steps"] is None
    working = [m for m in shape["modes"] if m["working"]]
    assert len(working) == 1 and working[0]["mode"] == listing["working_mode"]
    assert working[0]["mode_class"] == "longitudinal"
    assert working[0]["frequency_Hz"] == pytest.approx(metrics_of(bars["app"], r1)["f_working_Hz"])

    answer = alice.get(f"/api/v1/runs/{r1}/results/field/displacement?mode={listing['working_mode']}")
    assert answer.status_code == 200 and answer.mimetype == "application/octet-stream"
    header, arrays = decode(answer.data)
    assert header["mode"]["mode"] == listing["working_mode"] and header["mode"]["working"]
    assert header["location"] == "point" and header["components"] == 3 and header["cell_type"] == "tetra"
    n, m = len(arrays["points"]), len(arrays["cells"])
    assert arrays["points"].shape == (n, 3) == tuple(header["arrays"]["points"]["shape"])
    assert arrays["cells"].shape == (m, 4) and arrays["values"].shape == (n, 3)
    assert 0 < n <= MAX_POINTS and n == listing["n_points"] and not header["decimation"]["decimated"]
    assert arrays["cells"].min() >= 0 and arrays["cells"].max() < n
    values = arrays["values"]
    assert np_all_finite(values) and abs(values).max() > 0
    # a longitudinal mode moves the bar along its axis (z) far more than sideways
    assert abs(values[:, 2]).max() > 5 * max(abs(values[:, 0]).max(), abs(values[:, 1]).max())
    assert abs(arrays["points"][:, 2]).max() == pytest.approx(L1, rel=1e-5)


def np_all_finite(a) -> bool:
    import numpy as np

    return bool(np.isfinite(a).all())


def test_another_user_gets_404_and_no_credentials_401(bars):
    alice, bob, pid, r1 = bars["alice"], bars["bob"], bars["project_id"], bars["runs"][0]
    comp = alice.post(f"/api/v1/projects/{pid}/comparisons",
                      json={"name": "private", "run_ids": [r1], "metric_names": ["f_working_Hz"]}).get_json()
    anonymous = bob.client  # the test client without a token
    for method, url, body in (("GET", f"/api/v1/comparisons/{comp['id']}", None),
                              ("POST", f"/api/v1/comparisons/{comp['id']}/refresh", {}),
                              ("DELETE", f"/api/v1/comparisons/{comp['id']}", None),
                              ("GET", f"/api/v1/projects/{pid}/comparisons", None),
                              ("POST", f"/api/v1/projects/{pid}/comparisons", {"name": "x", "run_ids": [r1]}),
                              ("GET", f"/api/v1/runs/{r1}/results/fields", None),
                              ("GET", f"/api/v1/runs/{r1}/results/field/displacement", None)):
        assert bob.request(method, url, json=body).status_code == 404, (method, url)
        answer = anonymous.open(url, method=method, json=body)
        assert answer.status_code == 401, (method, url)
    assert alice.get(f"/api/v1/comparisons/{comp['id']}").status_code == 200  # nothing was deleted


def test_bad_inputs_are_refused_with_their_field_and_nothing_is_stored(bars):
    alice, (r1, r2), pid, foreign = bars["alice"], bars["runs"], bars["project_id"], bars["foreign"]
    url = f"/api/v1/projects/{pid}/comparisons"
    before = table_counts(bars["app"])
    cases_ = [
        ({"name": "x", "run_ids": [r1, r2], "metric_names": ["f_working_Hz", "f_wroking_Hz"]}, "metric_names[1]",
         "unknown metric 'f_wroking_Hz'"),
        ({"name": "x", "run_ids": [r1], "metric_names": ["mode.2.frequency_kHz"]}, "metric_names[0]",
         "unknown mode field"),
        ({"name": "x", "run_ids": [r1, foreign["other_project"]]}, "run_ids[1]", f"is not a run of project {pid}"),
        ({"name": "x", "run_ids": [foreign["bobs"]]}, "run_ids[0]", f"is not a run of project {pid}"),
        ({"name": "x", "run_ids": [r1, "../../etc"]}, "run_ids[1]", "is not a run of project"),
        ({"name": "x", "run_ids": []}, "run_ids", "at least one run"),
        ({"name": "x", "run_ids": [r1, r1]}, "run_ids[1]", "listed twice"),
        ({"name": "x", "run_ids": [r1], "baseline_run_id": r2}, "baseline_run_id", "must be one of run_ids"),
        ({"name": "a/b", "run_ids": [r1]}, "name", "must not contain '/'"),
        ({"name": "x", "run_ids": [r1], "colour": "red"}, "colour", "unknown field"),
        ({"run_ids": [r1]}, "name", "required"),
    ]
    for body, field, message in cases_:
        answer = alice.post(url, json=body)
        assert answer.status_code == 422, (body, answer.get_json())
        error = error_of(answer)
        assert error["field"] == field and message in error["message"], (body, error)
    comp = alice.post(url, json={"name": "ok", "run_ids": [r1]}).get_json()
    before = table_counts(bars["app"])
    for body, field in (({"add_run_ids": [foreign["other_project"]]}, "add_run_ids[0]"),
                        ({"baseline_run_id": foreign["bobs"]}, "baseline_run_id"),
                        ({"add_run_ids": [r2], "baseline_run_id": "nope"}, "baseline_run_id")):
        answer = alice.post(f"/api/v1/comparisons/{comp['id']}/refresh", json=body)
        assert answer.status_code == 422 and error_of(answer)["field"] == field, answer.get_json()
    assert table_counts(bars["app"]) == before
    assert [r["run_id"] for r in alice.get(f"/api/v1/comparisons/{comp['id']}").get_json()["results"]] == [r1]


# --- the service on SQLite and PostgreSQL ---------------------------------------------------------

@pytest.fixture
def setting(db_session, tmp_path):
    """Alice's project with three runs (metrics written as the reconciler would) and a
    run of another project of hers; Bob."""
    alice, bob = make_user(db_session, "alice@example.com"), make_user(db_session, "bob@example.com")
    project = projects.create_project(db_session, alice, name="Horns", application_type="horn_design")
    other = projects.create_project(db_session, alice, name="Other", application_type="horn_design")
    case = cases.create_case(db_session, alice, project.id, spec=thermal_spec(), name="c", storage_root=tmp_path)
    other_case = cases.create_case(db_session, alice, other.id, spec=thermal_spec(), name="c", storage_root=tmp_path)
    values = {"a": {"f_working_Hz": 20000.0, "gain": 2.0, "tuning_error_Hz": 0.0},
              "b": {"f_working_Hz": 18000.0, "gain": 2.5, "tuning_error_Hz": -100.0},
              "c": {}}
    ids = {}
    for key, metrics in values.items():
        run = add_run_row(db_session, project.id, case.id, new_run_id(), state="completed" if metrics else "running")
        db_session.add_all(Metric(run_id=run.run_id, name=n, value=v, unit=comparisons.metric_spec(n).unit)
                           for n, v in metrics.items())
        ids[key] = run.run_id
    db_session.commit()
    foreign = add_run_row(db_session, other.id, other_case.id, new_run_id()).run_id
    return {"alice": alice, "bob": bob, "project": project, "other": other, "ids": ids, "foreign": foreign}


def test_service_deltas_notes_refresh_and_delete(db_session, setting):
    alice, ids, project = setting["alice"], setting["ids"], setting["project"]
    comp = comparisons.create_comparison(db_session, alice, project.id, name=" sweep ",
                                         run_ids=[ids["a"], ids["b"], ids["c"]],
                                         metric_names=["f_working_Hz", "tuning_error_Hz", "gain"])
    assert comp.name == "sweep"
    rows = {r.run_id: r for r in comparisons.ordered_results(comp)}
    assert rows[ids["a"]].is_baseline and not rows[ids["b"]].is_baseline
    b = rows[ids["b"]].summary
    assert b["f_working_Hz"] == {"value": 18000.0, "unit": "Hz", "delta": -2000.0, "relative_delta": -0.1,
                                 "note": None}
    assert b["gain"]["relative_delta"] == pytest.approx(0.25) and b["gain"]["unit"] == "1"
    assert b["tuning_error_Hz"]["delta"] == -100.0 and b["tuning_error_Hz"]["relative_delta"] is None
    assert "baseline value is 0" in b["tuning_error_Hz"]["note"]
    c = rows[ids["c"]].summary["f_working_Hz"]
    assert c["value"] is None and c["delta"] is None and "(the run is running)" in c["note"]

    # run c finishes; refresh picks its metrics up; b becomes the baseline
    db_session.add(Metric(run_id=ids["c"], name="f_working_Hz", value=16000.0, unit="Hz"))
    db_session.commit()
    comp = comparisons.refresh_comparison(db_session, alice, comp.id, baseline_run_id=ids["b"])
    rows = {r.run_id: r for r in comparisons.ordered_results(comp)}
    assert comparisons.ordered_results(comp)[0].run_id == ids["b"]
    assert rows[ids["c"]].summary["f_working_Hz"]["relative_delta"] == pytest.approx(-2000.0 / 18000.0)
    assert rows[ids["a"]].summary["tuning_error_Hz"]["relative_delta"] == pytest.approx(1.0)  # / |baseline|

    # every shared metric ([]): a and b share three, c (with one) narrows them to that one
    every = comparisons.create_comparison(db_session, alice, project.id, name="all", run_ids=[ids["a"], ids["b"]])
    assert comparisons.effective_metric_names(every) == ["f_working_Hz", "gain", "tuning_error_Hz"]
    every = comparisons.refresh_comparison(db_session, alice, every.id, add_run_ids=[ids["c"], ids["a"]])
    assert comparisons.effective_metric_names(every) == ["f_working_Hz"] and len(every.results) == 3
    assert comparisons.list_comparisons(db_session, alice, project.id).total == 2

    # deleting the baseline run: the next row becomes the baseline on refresh
    db_session.delete(db_session.get(Run, ids["b"]))
    db_session.commit()
    db_session.expire_all()
    comp = comparisons.refresh_comparison(db_session, alice, comp.id)
    assert [r.run_id for r in comparisons.ordered_results(comp)] == [ids["a"], ids["c"]]
    assert comparisons.ordered_results(comp)[0].is_baseline

    comparisons.delete_comparison(db_session, alice, comp.id)
    with pytest.raises(NotFound):
        comparisons.get_comparison(db_session, alice, comp.id)
    assert db_session.get(Run, ids["a"]) is not None


def test_service_refuses_bad_input_and_other_users(db_session, setting):
    alice, bob, ids, project = setting["alice"], setting["bob"], setting["ids"], setting["project"]
    before = counts(db_session)
    bad = [
        (dict(run_ids=[]), "run_ids"),
        (dict(run_ids="abc"), "run_ids"),
        (dict(run_ids=[ids["a"], setting["foreign"]]), "run_ids[1]"),
        (dict(run_ids=[ids["a"], 7]), "run_ids[1]"),
        (dict(run_ids=[ids["a"]], metric_names=["gain", "no_such_metric"]), "metric_names[1]"),
        (dict(run_ids=[ids["a"]], metric_names=["probe.tip.colour"]), "metric_names[0]"),
        (dict(run_ids=[ids["a"]], baseline_run_id=ids["b"]), "baseline_run_id"),
        (dict(run_ids=[ids["a"]], description=3), "description"),
    ]
    for kwargs, field in bad:
        with pytest.raises(Invalid) as info:
            comparisons.create_comparison(db_session, alice, project.id, name="x", **kwargs)
        assert info.value.field == field, (kwargs, info.value)
    with pytest.raises(NotFound):
        comparisons.create_comparison(db_session, bob, project.id, name="x", run_ids=[ids["a"]])
    assert counts(db_session) == before

    comp = comparisons.create_comparison(db_session, alice, project.id, name="x", run_ids=[ids["a"]])
    for call in (lambda: comparisons.get_comparison(db_session, bob, comp.id),
                 lambda: comparisons.refresh_comparison(db_session, bob, comp.id),
                 lambda: comparisons.delete_comparison(db_session, bob, comp.id),
                 lambda: comparisons.list_comparisons(db_session, bob, project.id),
                 lambda: comparisons.get_comparison(db_session, alice, 0),
                 lambda: comparisons.get_comparison(db_session, alice, True)):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(Invalid) as info:
        comparisons.refresh_comparison(db_session, alice, comp.id, add_run_ids=[setting["foreign"]])
    assert info.value.field == "add_run_ids[0]"
    assert [r.run_id for r in comparisons.get_comparison(db_session, alice, comp.id).results] == [ids["a"]]
    assert db_session.query(ComparisonResult).count() == 1 and db_session.query(Comparison).count() == 1
    # an admin sees it
    admin = make_user(db_session, "root@example.com", admin=True)
    assert comparisons.get_comparison(db_session, admin, comp.id).id == comp.id

