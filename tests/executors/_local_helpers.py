"""Shared by the LocalExecutor / agent / `weldsim submit` tests: the cases they run, the
processes they look for in /proc, and the `tracker` fixture that stops every agent a test
started and fails the test if any process of it is left behind (then SIGKILLs it).

Never imports mpi4py or dolfinx (the test process launches mpirun through the agent).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THERMAL = ROOT / "examples" / "tab_weld_cu_al_transient.toml"
WELDSIM = Path(sys.executable).parent / "weldsim"
MPI_MODULES = ("mpi4py", "dolfinx", "petsc4py", "slepc4py")

#: the "long" transient: 800 steps of 10 ms with a checkpoint every 20 (3 ms to 50 ms a step
#: on 2 ranks, by machine), long enough to kill mid-run when the test acts at once
LONG_TIME = {"end_s": 8.0, "dt_s": 0.01, "checkpoint_every": 20}
#: 300,000 steps (≈ 15 min at 3 ms a step): a run the test ends itself (kill, walltime)
ENDLESS_TIME = {"end_s": 3000.0, "dt_s": 0.01, "checkpoint_every": 500}
#: metrics that depend on the wall clock, not on the physics
CLOCK_METRICS = ("compute_time_s",)


def ci_case():
    from weldsim_hpc.case_io import load_case

    return load_case(THERMAL, "ci")


def long_case():
    case = ci_case()
    return case.model_copy(update={"time": case.time.model_copy(update=LONG_TIME)})


def endless_case():
    case = ci_case()
    return case.model_copy(update={"time": case.time.model_copy(update=ENDLESS_TIME)})


def long_case_toml(tmp_path: Path) -> Path:
    """The long case as a TOML file (for `weldsim submit CASE --preset ci`)."""
    text = THERMAL.read_text()
    ci = "[presets.ci.time]\nend_s = 0.5\ndt_s = 0.05\n"
    assert ci in text
    path = tmp_path / "long.toml"
    path.write_text(text.replace(ci, "[presets.ci.time]\n" + "".join(f"{k} = {v}\n" for k, v in LONG_TIME.items())))
    return path


def physics_metrics(paths) -> dict[str, float]:
    from weldsim_hpc.results import read_metrics

    return {name: m.value for name, m in read_metrics(paths).items() if name not in CLOCK_METRICS}


def assert_metrics_close(got: dict[str, float], want: dict[str, float], rel: float = 1e-6,
                         ignore: tuple[str, ...] = ()) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name, value in want.items():
        if name in ignore:
            continue
        assert got[name] == pytest.approx(value, rel=rel, abs=1e-12), name


# --- processes, from /proc ----------------------------------------------------------------
def proc_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgid, sid, start ticks) of `pid`, or None if there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def is_live(pid: int, start_ticks: int | None = None) -> bool:
    """True if `pid` exists and has not exited (a zombie counts as gone: pid 1 here does
    not reap orphans), and — if given — started at `start_ticks` (not a reused pid)."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and (start_ticks is None or st[4] == start_ticks)


def all_pids() -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]


def session_processes(leader: int) -> dict[int, int]:
    """Live processes in the session or process group `leader` leads: {pid: start ticks}.

    A job is its launcher (mpirun, session leader) and its ranks: OpenMPI puts each rank in
    a process group of its own, but all stay in the launcher's session. Linux does not hand
    out a pid again while it names a live session or group, so this is safe after the
    leader has gone.
    """
    out = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None and st[0] not in ("Z", "X") and leader in (st[2], st[3]):
            out[pid] = st[4]
    return out


def processes_mentioning(text: str) -> dict[int, int]:
    """Live processes (not this one) whose command line contains `text`: {pid: start ticks}."""
    out = {}
    needle = text.encode()
    for pid in all_pids():
        if pid == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        st = proc_stat(pid)
        if needle in cmdline and st is not None and st[0] not in ("Z", "X"):
            out[pid] = st[4]
    return out


def listening_addresses(pid: int) -> list[str]:
    """Local addresses ("127.0.0.1:port", "0.0.0.0:port", "[::]:port" …) that process `pid`
    listens on with TCP, from /proc/<pid>/fd and /proc/net/tcp{,6}."""
    import ipaddress
    import re

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if found:
            inodes.add(found.group(1))
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] != "0A" or parts[9] not in inodes:  # 0A: LISTEN
                continue
            host, port = parts[1].split(":")
            raw = bytes.fromhex(host)
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # per 32-bit word, host order
            address = ipaddress.ip_address(words)
            out.append(f"{address}:{int(port, 16)}" if address.version == 4 else f"[{address}]:{int(port, 16)}")
    return out


def wait_gone(pids: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait until none of {pid: start ticks} lives; return those still alive after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {p: t for p, t in pids.items() if is_live(p, t)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def kill_session(leader: int) -> dict[int, int]:
    """SIGKILL the job led by `leader` (its process group and every rank of its session)."""
    procs = session_processes(leader)
    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return procs


# --- waiting on a run -----------------------------------------------------------------------
def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def progress_rows(paths) -> int:
    """Progress rows in the current progress.h5 (0 if none or not readable yet)."""
    from weldsim_hpc.progress_reader import ProgressReader

    if not paths.progress_h5.exists():
        return 0
    try:
        with ProgressReader(paths.progress_h5) as reader:
            return len(reader.poll().rows)
    except Exception:  # mid-creation: try again
        return 0


def checkpoints(paths) -> int:
    """Checkpoints in the current progress.h5 (0 if none or not readable yet)."""
    import h5py

    if not paths.progress_h5.exists():
        return 0
    try:
        with h5py.File(paths.progress_h5, "r", swmr=True) as f:
            return int(f["checkpoints/index"].shape[0])
    except Exception:
        return 0


def wait_running(paths, timeout: float = 180, *, rows: int = 1, ckpts: int = 0) -> dict:
    """Wait until the run's attempt has written `rows` progress rows (and `ckpts` checkpoints);
    return its attempts.json entry. Fails if the attempt ended first."""
    from weldsim_hpc.run_paths import read_attempts

    def ready():
        attempts = read_attempts(paths)
        if attempts and attempts[-1].get("exit_code") is not None:
            raise AssertionError(f"the attempt ended before the test could act: {attempts[-1]}")
        return attempts and progress_rows(paths) >= rows and checkpoints(paths) >= ckpts

    wait_for(ready, timeout, f"{rows} progress row(s) and {ckpts} checkpoint(s) of run {paths.run_id}")
    return read_attempts(paths)[-1]


def wait_final(paths, timeout: float = 240):
    """The run's executor record once its state is final."""
    from weldsim_hpc.executors.record import RecordError, read_record

    def final():
        try:
            record = read_record(paths)
        except RecordError:
            return None
        return record if record.state.is_terminal else None

    return wait_for(final, timeout, f"run {paths.run_id} to end", interval=0.2)


# --- the tracker fixture ---------------------------------------------------------------------
class Tracker:
    """Runs roots, in-process agents and daemons of one test; cleans up after it."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.roots: list[Path] = []
        self.agents: list = []
        self.agent_pids: set[int] = set()

    def root(self, name: str = "runs") -> Path:
        root = (self.tmp_path / name).absolute()
        self.roots.append(root)
        return root

    def config(self, root: Path, **overrides):
        from weldsim_hpc.executors.config import load_config

        return load_config({"runs_root": root, **overrides})

    def agent(self, root: Path, **overrides):
        """An Agent of `root` in this process, started (closed at teardown)."""
        from weldsim_hpc.executors.agent import Agent

        agent = Agent(self.config(root, **overrides))
        self.agents.append(agent)
        return agent.start()

    def daemon(self, root: Path):
        """The daemon of `root` (started on demand): an AgentClient; its pid is remembered."""
        from weldsim_hpc.executors.rpc import ensure_agent

        client = ensure_agent(self.config(root))
        self.agent_pids.add(int(client.info["pid"]))
        return client

    def remember_agent_of(self, root: Path) -> int | None:
        from weldsim_hpc.executors.rpc import read_agent_file

        info = read_agent_file(self.config(root))
        if info is not None:
            self.agent_pids.add(int(info["pid"]))
            return int(info["pid"])
        return None

    def teardown(self) -> None:
        from weldsim_hpc.executors.rpc import stop_agent
        from weldsim_hpc.run_paths import iter_runs, read_attempts

        for agent in self.agents:
            agent.close()
        for root in self.roots:
            self.remember_agent_of(root)
            stop_agent(self.config(root), timeout_s=15)
        suspects: dict[int, int] = {}
        leaders = set(self.agent_pids)
        for root in self.roots:
            for paths in iter_runs(root):
                try:
                    attempts = read_attempts(paths)
                except Exception:
                    continue
                leaders.update(a["pid"] for a in attempts if isinstance(a.get("pid"), int))
        deadline = time.monotonic() + 15
        while True:
            suspects = {}
            for leader in leaders:
                suspects.update(session_processes(leader))
            for root in self.roots:
                suspects.update(processes_mentioning(os.fspath(root)))
            if not suspects or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if suspects:
            described = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                         for pid in suspects if proc_stat(pid)}
            for pid, ticks in suspects.items():
                if is_live(pid, ticks):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            pytest.fail(f"processes left behind by the test (SIGKILLed now): {described}")
        loaded = [m for m in MPI_MODULES if m in sys.modules]
        assert not loaded, f"the test process imported {loaded}: it could not launch mpirun any more"


@pytest.fixture()
def tracker(tmp_path, monkeypatch):
    """Runs roots under tmp_path with agents that are stopped at the end, and a check that
    no process of the test (agent daemons, jobs and their ranks) remains."""
    for key in list(os.environ):
        if key.startswith("WELDSIM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WELDSIM_POLL_S", "0.2")  # inherited by the daemons the test starts
    t = Tracker(tmp_path)
    yield t
    t.teardown()
