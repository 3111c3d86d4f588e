"""`weldsim submit|status|watch|cancel|logs|agent`: runs handed to the agent and followed.

`submit` prepares the run directory here (geometry and meshing need this process's main
thread), then hands the run to the runs root's agent (started on demand) and returns.
`status`, `watch` and `logs` read the run directory (executor.json, attempts.json,
progress.h5) and work with or without a live agent; `cancel` needs the agent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .cli import _table, _user_errors, console, err_console, main, preset_option

#: exit codes of `weldsim watch` by final state (entry-point codes where they exist)
WATCH_EXIT = {"completed": 0, "failed": 3, "interrupted": 4, "cancelled": 5, "lost": 6}

runs_root_option = click.option("--runs-root", type=click.Path(file_okay=False, path_type=Path), default=None,
                                help="runs root (default: $WELDSIM_RUNS_ROOT or ./runs)")


def _config(runs_root: Path | None, **overrides):
    from .executors.config import load_config

    return load_config({"runs_root": runs_root, **overrides})


def _paths(config, run_id: str):
    from .run_paths import RunPaths

    paths = RunPaths.for_id(config.runs_root, run_id)
    if not paths.root.is_dir():
        raise click.ClickException(f"no run {run_id} under {config.runs_root}")
    return paths


@main.command("submit")
@click.argument("case_file", metavar="CASE", required=False, type=click.Path(dir_okay=False, path_type=Path))
@preset_option
@click.option("--resume", "resume_id", metavar="RUN", default=None,
              help="start a new attempt of an ended run from its last checkpoint (instead of CASE)")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default=None,
              help="where it runs (default: the configured executor, local)")
@click.option("--ntasks", type=click.IntRange(min=1), default=None, help="MPI ranks (default: the case's)")
@click.option("--nodes", type=click.IntRange(min=1), default=None, help="Slurm nodes")
@click.option("--partition", default=None, help="Slurm partition")
@click.option("--account", default=None, help="Slurm account")
@click.option("--time", "walltime", default=None, help="walltime, e.g. 01:30:00 (Slurm)")
@click.option("--mem", default=None, help="memory per job, e.g. 8G (Slurm)")
@click.option("--image", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="run inside this Apptainer image (Slurm)")
@click.option("--backend", type=click.Choice(["auto", "fenicsx", "scipy", "preview"]), default=None,
              help="override the case's solver.backend")
@runs_root_option
@_user_errors
def submit(case_file, preset, resume_id, executor, ntasks, nodes, partition, account, walltime, mem, image,
           backend, runs_root) -> None:
    """Hand a case (or, with --resume, an ended run) to the agent; print the run id, return."""
    from .executors.record import Resources
    from .executors.rpc import ensure_agent
    from .launch import set_run_ranks

    if (case_file is None) == (resume_id is None):
        raise click.UsageError("give either CASE or --resume RUN")
    config = _config(runs_root)
    if resume_id is not None:
        paths = _paths(config, resume_id)
        ranks = set_run_ranks(paths, ntasks)
    else:
        from .backends.registry import select_backend
        from .case_io import load_case
        from .prepare import prepare_run

        case = load_case(case_file, preset)
        chosen = select_backend(backend or case.solver.backend, case.analysis)
        case = case.model_copy(update={"solver": case.solver.model_copy(update={"backend": chosen})})
        with console.status("preparing the run directory (geometry, mesh)…"):
            paths = prepare_run(case, config.runs_root, ranks=ntasks)
        ranks = ntasks or case.solver.ranks
    resources = Resources(ntasks=ranks, nodes=nodes, partition=partition, account=account, walltime=walltime,
                          mem=mem, image=None if image is None else str(image.absolute()))
    client = ensure_agent(config)
    reply = client.request("submit", run_id=paths.run_id, executor=executor,
                           resources=resources.model_dump(exclude_none=True), resume=resume_id is not None)
    record = reply["record"]
    console.print(paths.run_id, highlight=False)
    err_console.print(f"submitted to the {record['executor']} executor ({ranks} rank(s)); "
                      f"follow it with: weldsim watch {paths.run_id}", highlight=False, soft_wrap=True)


def _latest_progress(paths):
    """(percent, phase) from the current attempt's progress.h5, or (None, None)."""
    from .progress_reader import ProgressReader

    if not paths.progress_h5.exists():
        return None, None
    try:
        with ProgressReader(paths.progress_h5) as reader:
            row, _ = reader.latest()
    except (OSError, KeyError, ValueError):
        return None, None
    return (row.percent, row.phase) if row else (None, None)


def _elapsed(record) -> float:
    return (record.finished_at or time.time()) - record.submitted_at


def _status_row(paths):
    from .executors.record import RecordError, read_record
    from .run_paths import read_attempts

    try:
        record = read_record(paths)
    except RecordError:
        return None
    percent, phase = _latest_progress(paths)
    if record.state == "completed":
        percent, phase = 100.0, "done"
    attempts = len(read_attempts(paths)) if paths.attempts_json.exists() else 0
    return (paths.run_id, record.executor, str(record.state), f"{percent:.0f}%" if percent is not None else "-",
            phase or "-", f"{_elapsed(record):.0f} s", attempts, record.reason or "")


@main.command("status")
@click.argument("run_id", required=False)
@runs_root_option
@_user_errors
def status(run_id: str | None, runs_root: Path | None) -> None:
    """Table of submitted runs (or one): state, progress, elapsed, attempts."""
    from .executors.record import submitted_runs

    config = _config(runs_root)
    if run_id is not None:
        rows = [_status_row(_paths(config, run_id))]
        if rows[0] is None:
            raise click.ClickException(f"run {run_id} was never submitted to an executor")
    else:
        rows = sorted((r for r in (_status_row(p) for p, _ in submitted_runs(config.runs_root)) if r),
                      key=lambda r: r[0])
    console.print(_table(f"Runs under {config.runs_root}",
                         ["run", "executor", "state", "progress", "phase", "elapsed", "attempts", "reason"], rows))


@main.command("watch")
@click.argument("run_id")
@runs_root_option
@_user_errors
def watch(run_id: str, runs_root: Path | None) -> None:
    """Live progress bar until the run ends; exits 0 completed, 3 failed, 4 interrupted,
    5 cancelled, 6 lost."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from .executors.record import read_record

    config = _config(runs_root)
    paths = _paths(config, run_id)
    columns = (TextColumn("[bold]{task.fields[state]:<11}"), TextColumn("{task.fields[phase]:<18}"), BarColumn(),
               TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(run_id, total=100.0, state="", phase="")
        while True:
            record = read_record(paths)
            percent, phase = _latest_progress(paths)
            if record.state == "completed":
                percent, phase = 100.0, "done"
            bar.update(task, completed=percent or 0.0, state=str(record.state), phase=(phase or "")[:18])
            if record.state.is_terminal:
                break
            time.sleep(config.poll_s)
    message = f"run {run_id}: {record.state}" + (f" ({record.reason})" if record.reason else "")
    (console if record.state == "completed" else err_console).print(message, highlight=False, soft_wrap=True)
    sys.exit(WATCH_EXIT[str(record.state)])


@main.command("cancel")
@click.argument("run_id")
@runs_root_option
@_user_errors
def cancel(run_id: str, runs_root: Path | None) -> None:
    """Cancel a queued or running run (its run directory and partial progress are kept)."""
    from .executors.rpc import AgentUnavailable, connect

    config = _config(runs_root)
    _paths(config, run_id)
    client = connect(config)
    if client is None:
        raise AgentUnavailable(f"no agent serves {config.runs_root}: start one with `weldsim agent start` "
                               "(it adopts the run), then cancel again")
    record = client.request("cancel", run_id=run_id)["record"]
    console.print(f"run {run_id}: {record['state']}", highlight=False)


@main.command("logs")
@click.argument("run_id")
@click.option("-n", "--lines", type=click.IntRange(min=1), default=200, show_default=True)
@runs_root_option
@_user_errors
def logs(run_id: str, lines: int, runs_root: Path | None) -> None:
    """The tail of the run's solver log, launcher log and scheduler log."""
    from .executors.base import tail_logs
    from .executors.rpc import connect

    config = _config(runs_root)
    paths = _paths(config, run_id)
    client = connect(config)
    text = client.request("logs", run_id=run_id, lines=lines)["text"] if client else tail_logs(paths, lines)
    click.echo(text)


@main.group("agent", invoke_without_command=True)
@click.pass_context
def agent(ctx: click.Context) -> None:
    """The long-lived process that owns a runs root's runs: start, stop, status."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(agent_status)


@agent.command("start")
@click.option("--foreground", is_flag=True, help="serve in this process (Ctrl-C or SIGTERM stops it)")
@runs_root_option
@_user_errors
def agent_start(foreground: bool, runs_root: Path | None) -> None:
    """Start the agent of the runs root (no-op if it runs)."""
    from .executors.rpc import connect, serve, start_daemon

    config = _config(runs_root)
    if foreground:
        sys.exit(serve(str(config.runs_root)))
    client = connect(config) or start_daemon(config)
    console.print(f"agent pid {client.info['pid']} serves {config.runs_root} on 127.0.0.1:{client.info['port']}",
                  highlight=False, soft_wrap=True)


@agent.command("stop")
@runs_root_option
@_user_errors
def agent_stop(runs_root: Path | None) -> None:
    """Stop the agent; runs keep going and the next agent adopts them."""
    from .executors.rpc import stop_agent

    config = _config(runs_root)
    pid = stop_agent(config)
    console.print(f"agent pid {pid} stopped" if pid else f"no agent serves {config.runs_root}", highlight=False)


@agent.command("status")
@runs_root_option
@_user_errors
def agent_status(runs_root: Path | None) -> None:
    """Whether an agent serves the runs root, and the runs it follows."""
    from .executors.rpc import connect

    config = _config(runs_root)
    client = connect(config)
    if client is None:
        console.print(f"no agent serves {config.runs_root}", highlight=False)
        sys.exit(1)
    info = client.request("ping")
    console.print(f"agent pid {info['pid']} serves {info['runs_root']}; following {len(info['active'])} run(s)"
                  + (": " + ", ".join(info["active"]) if info["active"] else ""), highlight=False, soft_wrap=True)
