"""The portal's business logic: one module per resource, no Flask.

Every function takes its collaborators as arguments — the SQLAlchemy session, the acting
user, paths (runs root, storage root), a run canceller — and returns model objects or
raises a domain error of `portal.services.errors`. Blueprints (portal.api) only map HTTP
to these functions and the errors to status codes; the CLI (portal.cli) calls them too.

    errors      NotFound, Conflict, Invalid(field), Unauthorized, Forbidden, Unavailable
    accounts    users, password checks, API tokens (stored as SHA-256)
    access      who sees what: owners see their projects, admins see all
    projects    create, get, list (paginated, filtered), update, delete (runs and files go with it)
    materials   built-in (read-only) and custom materials; inlining into a case document
    cases       simulation cases validated as CaseSpec; the case document a run is given
    runs        submit, cancel, resume, get, list runs; run_sync mirrors run directories into rows
    geometries  parametric and uploaded geometry versions, meshing jobs (portal.geometry_jobs);
                geometry_uploads checks uploads before storing, geometry_preview the viewer surface
    fields      result fields of a run for a viewer (h5py only): listing, binary arrays, decimation
    comparisons runs × metrics with deltas against a baseline run
    workflows   DAGs of steps (weldsim_hpc.workflow) stored, validated and executed
                (portal.workflow_runner walks them)
    teardown    unfinished runs of a deletion: refuse or cancel; remove their directories
    paths       where a project's files and a run's directory live
    names       the rule for user-given names (data, never paths)
    pagination  Page and paginate()

Writes commit before returning; a refused request has changed nothing.
"""
