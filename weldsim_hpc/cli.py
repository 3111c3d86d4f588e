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
