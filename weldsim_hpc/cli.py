"""The `weldsim` command.

Errors a user can act on (an invalid case, an unknown material, a corrupt mesh) are
printed as messages with exit code 1, never as tracebacks.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import CaseValidationError, WeldSimError

console = Console()
err_console = Console(stderr=True)


def _user_errors(func):
    """Turn domain errors into a readable message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CaseValidationError as exc:
            err_console.print(f"[bold red]invalid case[/]: {len(exc.errors)} problem(s)")
            for path, message in exc.errors:
                err_console.print(f"  {path + ': ' if path else ''}{message}", markup=False, highlight=False)
            sys.exit(1)
        except WeldSimError as exc:
            err_console.print("[bold red]error[/]: ", end="")
            err_console.print(str(exc), markup=False, highlight=False)
            sys.exit(1)

    return wrapper


def _table(title: str, columns: list[str], rows) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


@click.group()
@click.version_option(package_name="weldsim-hpc")
def main() -> None:
    """WeldSim HPC: ultrasonic welding horns and battery-tab welds."""


case_argument = click.argument("case_file", metavar="CASE", type=click.Path(dir_okay=False, path_type=Path))
preset_option = click.option("--preset", default=None, help="merge [presets.NAME] over the case (e.g. ci)")


@main.command()
@case_argument
@preset_option
@_user_errors
def validate(case_file: Path, preset: str | None) -> None:
    """Check a case file; print every problem."""
    from .case_io import load_case

    case = load_case(case_file, preset)
    console.print(f"[green]valid[/]: {case.name} ({case.analysis}, {case.geometry.kind})")


@main.command()
def schema() -> None:
    """Print the JSON Schema of case files."""
    from .case import CaseSpec

    click.echo(json.dumps(CaseSpec.model_json_schema(), indent=2))


@main.group(invoke_without_command=True)
@click.pass_context
def materials(ctx: click.Context) -> None:
    """List the built-in materials (`materials show ID` for one)."""
    if ctx.invoked_subcommand is None:
        from .materials import MATERIALS_TABLE_COLUMNS, materials_table_rows

        console.print(_table("Built-in materials", MATERIALS_TABLE_COLUMNS, materials_table_rows()))


@materials.command("show")
@click.argument("material_id")
@_user_errors
def materials_show(material_id: str) -> None:
    """Show one material with the source of every number."""
    from .materials import get_material, material_detail_rows

    material = get_material(material_id)
    console.print(_table(f"{material.name} ({material.id})", ["property", "value", "source"], material_detail_rows(material)))


@main.command()
@case_argument
@preset_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@_user_errors
def geometry(case_file: Path, preset: str | None, out_dir: Path) -> None:
    """Build the case's geometry: STEP, STL, .msh and groups.json under OUT."""
    from .case_io import load_case
    from .pipeline import build_geometry_files

    case = load_case(case_file, preset)
    with console.status("building geometry and meshing (gmsh)…"):
        files = build_geometry_files(case, out_dir)
    console.print(_table("Geometry files", ["file", "path"], [(k, str(v)) for k, v in files.items()]))


@main.command()
@case_argument
@preset_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@_user_errors
def mesh(case_file: Path, preset: str | None, out_dir: Path) -> None:
    """Validate, build and mesh a case; write OUT/mesh (XDMF + groups.json); print the summary."""
    from .case_io import load_case
    from .mesh import mesh_info
    from .pipeline import mesh_case

    case = load_case(case_file, preset)
    console.print(f"[green]valid[/]: {case.name} ({case.analysis}, {case.geometry.kind})")
    with console.status("building geometry and meshing (gmsh)…"):
        mesh_data, mesh_dir = mesh_case(case, out_dir)
    info = mesh_info(mesh_data)
    console.print(_table(f"Mesh of {case.name}", ["quantity", "value"], info.as_rows()))
    console.print(f"mesh written to {mesh_dir} (ParaView opens mesh.xdmf)")


# --- running a case: `weldsim run` and `weldsim resume` ------------------------------------
# This process never imports mpi4py or dolfinx: it launches the MPI job (see launch.py).


def _follow(paths, ranks: int, resume: bool) -> int:
    """Launch the entry point for `paths`, show a live progress bar, return its exit code.

    Ctrl-C asks the job to stop (`launch.cancel`: it writes a checkpoint and exits 4); a second Ctrl-C stops following and leaves the job running.
    """
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from .launch import LAUNCHER_LOG, cancel, launch, watch

    proc = launch(paths.root, ranks, resume=resume)
    console.print(f"started {'resumed ' if resume else ''}run [bold]{paths.run_id}[/] on {ranks} rank(s), "
                  f"pid {proc.pid} (launcher output: {paths.root / LAUNCHER_LOG})", highlight=False, soft_wrap=True)
    columns = (TextColumn("[bold]{task.fields[phase]:<18}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
    finals: list[dict] = []
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("run", total=100.0, phase="starting", note="")

        def on_message(msg: dict) -> None:
            if msg["type"] == "progress":
                bar.update(task, completed=msg["percent"] or 0.0, phase=msg["phase"][:18],
                           note=(msg["message"] or "")[:60])
            else:
                finals.append(msg)
                if msg["type"] == "completed":
                    bar.update(task, completed=100.0, phase="completed", note="")
                else:
                    bar.update(task, phase=msg.get("status", "error"), note="")

        try:
            code = watch(paths.root, proc, on_message)
        except KeyboardInterrupt:
            err_console.print("interrupt: asking the job to checkpoint and stop (Ctrl-C again to detach)…")
            cancel(proc)
            try:
                code = watch(paths.root, proc, on_message)
            except KeyboardInterrupt:
                err_console.print(f"detached; the job (pid {proc.pid}) keeps running in {paths.root}")
                return 130
    for msg in finals:
        if msg["type"] == "error":
            err_console.print(f"[bold red]{msg.get('status', 'error')}[/]: ", end="")
            err_console.print(msg["error"], markup=False, highlight=False, soft_wrap=True)
    return code


def _report(paths, code: int) -> None:
    """Metrics table and ParaView files after a completed run; the resume hint after exit 4."""
    from .launch import EXIT_INTERRUPTED, EXIT_MEANINGS
    from .results import METRICS_TABLE_COLUMNS, MetricError, metrics_table_rows, read_metrics

    if code == 0:
        try:
            rows = metrics_table_rows(read_metrics(paths))
        except MetricError as exc:
            err_console.print(f"[yellow]no metrics[/]: {exc}", highlight=False, soft_wrap=True)
        else:
            preview = paths.results_dir / "preview.json"
            basis = f" ({json.loads(preview.read_text())['basis']})" if preview.exists() else ""
            console.print(_table(f"Metrics of run {paths.run_id}{basis}", list(METRICS_TABLE_COLUMNS), rows))
        for label, path in (("ParaView", paths.fields_pvd), ("XDMF", paths.fields_xdmf)):
            if path.exists():
                console.print(f"{label}: {path}", highlight=False, soft_wrap=True)
        console.print(f"[green]completed[/]: {paths.root}", highlight=False, soft_wrap=True)
        return
    meaning = EXIT_MEANINGS.get(code, "unexpected exit")
    err_console.print(f"[bold red]run {paths.run_id} ended with exit code {code}[/] ({meaning}); "
                      f"logs: {paths.solver_log}, {paths.root / 'launcher.log'}", highlight=False, soft_wrap=True)
    if code == EXIT_INTERRUPTED:
        err_console.print(f"resume it with: weldsim resume {paths.root}", highlight=False, soft_wrap=True)


np_option = click.option("--np", "ranks", type=click.IntRange(min=1), default=None,
                         help="MPI ranks (default: the case's solver.ranks)")


@main.command("run")
@case_argument
@preset_option
@np_option
@click.option("--backend", type=click.Choice(["auto", "fenicsx", "scipy", "preview"]), default=None,
              help="override the case's solver.backend")
@click.option("--out", "out_dir", default=Path("runs"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="runs root; the run goes to OUT/<run id>")
@_user_errors
def run_case(case_file: Path, preset: str | None, ranks: int | None, backend: str | None, out_dir: Path) -> None:
    """Validate, prepare and run a case on N ranks; show progress, then the metrics.

    Exit code: 0 completed, 2 invalid case, 3 solver failed, 4 interrupted (resumable).
    """
    from .backends.registry import select_backend
    from .case_io import load_case
    from .prepare import prepare_run

    case = load_case(case_file, preset)
    chosen = select_backend(backend or case.solver.backend, case.analysis)
    case = case.model_copy(update={"solver": case.solver.model_copy(update={"backend": chosen})})
    console.print(f"[green]valid[/]: {case.name} ({case.analysis}, backend {chosen})", highlight=False, soft_wrap=True)
    with console.status("preparing the run directory (geometry, mesh)…"):
        paths = prepare_run(case, out_dir, ranks=ranks)
    code = _follow(paths, ranks or case.solver.ranks, resume=False)
    _report(paths, code)
    sys.exit(code)


@main.command("resume")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@np_option
@click.option("--backend", type=click.Choice(["auto", "fenicsx", "scipy", "preview"]), default=None,
              help="continue on another backend (fenicsx and scipy checkpoints are interchangeable)")
@_user_errors
def resume_run(run_dir: Path, ranks: int | None, backend: str | None) -> None:
    """Continue an interrupted run from its last checkpoint (optionally on another --np or --backend)."""
    from .launch import set_run_backend, set_run_ranks
    from .run_paths import RunPaths

    paths = RunPaths.from_dir(run_dir)
    if backend is not None:
        _, ranks = set_run_backend(paths, backend, ranks)
    ranks = set_run_ranks(paths, ranks)
    code = _follow(paths, ranks, resume=True)
    _report(paths, code)
    sys.exit(code)


from . import cli_exec  # noqa: E402,F401  (registers submit/status/watch/cancel/logs/agent)
from . import cli_portal  # noqa: E402,F401  (registers `weldsim portal`)
