"""LocalExecutor and the agent with REAL runs: the transient thermal example at preset ci
on 2 ranks (dolfinx under mpirun), through an Agent in this process and through the
`weldsim agent` daemon: completion, cancel, adoption of a live orphan after the agent is
SIGKILLed, and a lost run (agent and job SIGKILLed) resumed exactly once.

Every test ends with the tracker's check that no process of it is left. This process
never imports mpi4py or dolfinx: the jobs it starts through the agent run mpirun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from weldsim_hpc.errors import WeldSimError
from weldsim_hpc.executors.agent import Agent, AgentError, AgentRunning
from weldsim_hpc.executors.base import Attempt, Outcome
from weldsim_hpc.executors.local import (
    EXIT_LOST,
    LocalExecutor,
    is_same_process,
    process_start_time,
    run_attempt,
    signal_group,
)
from weldsim_hpc.executors.record import RunRecord, is_locked, read_record, try_lock, write_record
from weldsim_hpc.executors.rpc import AgentUnavailable, read_agent_file, start_daemon
from weldsim_hpc.prepare import prepare_run
from weldsim_hpc.run_paths import RunIdError, RunPaths, iter_runs, read_attempts, record_attempt_start
from weldsim_hpc.states import RunState

from ._local_helpers import (  # noqa: F401  (tracker is a fixture)
    THERMAL,
    WELDSIM,
    assert_metrics_close,
    ci_case,
    is_live,
    kill_session,
    listening_addresses,
    endless_case,
    long_case,
    long_case_toml,
    physics_metrics,
    proc_stat,
    session_processes,
    tracker,
    wait_final,
    wait_for,
    wait_gone,
    wait_running,
)

pytestmark = pytest.mark.timeout(120)  # each test is bounded; real runs get REAL
REAL = pytest.mark.timeout(420)


def weldsim_run(case_path, out, *extra) -> RunPaths:
    """`weldsim run CASE --preset ci --np 2`: the uninterrupted reference of a case."""
    out_proc = subprocess.run([str(WELDSIM), "run", str(case_path), "--preset", "ci", "--np", "2", "--out", str(out),
                               *extra], capture_output=True, text=True, timeout=400)
    assert out_proc.returncode == 0, out_proc.stdout + out_proc.stderr
    (paths,) = list(iter_runs(out))
    return paths


@pytest.fixture(scope="module")
def ci_reference(tmp_path_factory):
    """Metrics of `weldsim run` of the ci example on 2 ranks."""
    return physics_metrics(weldsim_run(THERMAL, tmp_path_factory.mktemp("ci-ref")))


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """Metrics of an uninterrupted `weldsim run` of the long case on 2 ranks."""
    tmp = tmp_path_factory.mktemp("long-ref")
    return physics_metrics(weldsim_run(long_case_toml(tmp), tmp / "runs"))


def history(record: RunRecord) -> list[str]:
    return [state.value for _, state, _ in record.history]


def attempts_of(paths: RunPaths) -> list[tuple[int, int | None]]:
    return [(a["attempt"], a["exit_code"]) for a in read_attempts(paths)]


# --- without a real run: adoption rules, cancel order, process identity ----------------------
def fake_run(tmp_path, run_id="abc123def456") -> RunPaths:
    paths = RunPaths.for_id(tmp_path, run_id)
    paths.root.mkdir(parents=True)
    paths.case_json.write_text("{}")
    paths.attempts_json.write_text("[]")
    return paths


def executor(tmp_path, **overrides) -> LocalExecutor:
    from weldsim_hpc.executors.config import load_config

    return LocalExecutor(load_config({"runs_root": tmp_path, **overrides}, env={}))


def hold_lock_in_child(paths: RunPaths, *argv: str) -> subprocess.Popen:
    """A stand-in job: `argv` (default sleep 60) in its own session, holding run.lock."""
    fd = try_lock(paths)
    try:
        proc = subprocess.Popen(list(argv) or ["sleep", "60"], pass_fds=(fd,), start_new_session=True)
    finally:
        os.close(fd)
    record_attempt_start(paths, len(read_attempts(paths)) + 1, proc.pid, process_start_time(proc.pid))
    return proc


def test_process_identity_from_proc():
    me = process_start_time(os.getpid())
    assert me is not None and me <= time.time()
    assert is_same_process(os.getpid(), me)
    assert not is_same_process(os.getpid(), me - 3600)  # a reused pid started at another time
    assert process_start_time(2 ** 22 + 1) is None and not is_same_process(2 ** 22 + 1, me)


def test_a_zombie_is_not_a_live_process():
    proc = subprocess.Popen(["true"])
    started = process_start_time(proc.pid)
    wait_for(lambda: (proc_stat(proc.pid) or ("Z",))[0] == "Z", 10, "the child to exit")  # not reaped yet
    try:
        assert process_start_time(proc.pid) is None and not is_same_process(proc.pid, started or 0.0)
    finally:
        proc.wait()


def test_adopt_reads_the_run_directory_only(tmp_path):
    ex = executor(tmp_path)
    paths = fake_run(tmp_path)
    record = RunRecord(run_id=paths.run_id, executor="local")
    assert ex.adopt(paths, record) is None  # never started: the agent starts it
    record_attempt_start(paths, 1, 999999, time.time())
    from weldsim_hpc.run_paths import record_attempt_end

    record_attempt_end(paths, 1, 0)
    assert ex.adopt(paths, record).state is RunState.COMPLETED
    assert ex.adopt(paths, record.model_copy(update={"cancel_requested": True})).state is RunState.CANCELLED
    record_attempt_start(paths, 2, 999999, time.time())
    record_attempt_end(paths, 2, EXIT_LOST)
    lost = ex.adopt(paths, record)
    assert isinstance(lost, Outcome) and lost.state is RunState.LOST and lost.resubmit


def test_live_orphan_is_adopted_and_a_dead_one_is_lost(tmp_path):
    ex = executor(tmp_path)
    paths = fake_run(tmp_path)
    record = RunRecord(run_id=paths.run_id, executor="local")
    job = hold_lock_in_child(paths)
    try:
        found = ex.adopt(paths, record)
        assert isinstance(found, Attempt) and found.adopted and found.number == 1 and found.future is None
        assert ex.poll(paths, record, found) is None  # followed while run.lock is held
        assert ex.is_running(paths, found)
    finally:
        job.kill()
        job.wait()
    outcome = ex.poll(paths, record, found)  # lock free, no exit seen, no progress file: lost
    assert outcome.state is RunState.LOST and outcome.resubmit
    assert "ended while no agent watched it" in outcome.reason
    assert attempts_of(paths) == [(1, EXIT_LOST)]
    again = ex.adopt(paths, record)  # idempotent: the recorded -1 still reads as lost
    assert again.state is RunState.LOST and attempts_of(paths) == [(1, EXIT_LOST)]


def test_cancel_releases_the_future_first_then_sigterm_then_sigkill_after_the_grace(tmp_path, monkeypatch):
    ex = executor(tmp_path, cancel_grace_s=1.0)
    paths = fake_run(tmp_path)
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                      "print('ready', flush=True); time.sleep(60)"]
    fd = try_lock(paths)
    try:
        job = subprocess.Popen(stubborn, pass_fds=(fd,), start_new_session=True, stdout=subprocess.PIPE, text=True)
    finally:
        os.close(fd)
    record_attempt_start(paths, 1, job.pid, process_start_time(job.pid))
    assert job.stdout.readline().strip() == "ready"
    calls = []

    class Future:
        def cancel(self):
            calls.append(("release", is_same_process(job.pid, process_start_time(job.pid) or 0)))

    def recording_signal_group(pid, sig):
        calls.append((signal.Signals(sig).name, round(time.monotonic() - began, 1)))
        return signal_group(pid, sig)

    monkeypatch.setattr("weldsim_hpc.executors.local.signal_group", recording_signal_group)
    began = time.monotonic()
    try:
        ex.cancel(paths, Attempt(paths.run_id, 1, future=Future()))
    finally:
        if job.poll() is None:
            job.kill()
        job.wait()
    assert [c[0] for c in calls] == ["release", "SIGTERM", "SIGKILL"]
    assert calls[0][1] is True  # released while the job still ran
    assert calls[1][1] < 2.0 and 0.9 <= calls[2][1] < 8.0  # SIGKILL after the 1 s grace
    assert job.returncode == -signal.SIGKILL and not is_locked(paths)


def test_cancel_of_an_orphan_that_exits_on_sigterm_returns_at_once(tmp_path):
    """The orphan's launcher becomes a zombie (nobody reaps it): that is gone, not running."""
    ex = executor(tmp_path, cancel_grace_s=30.0)
    paths = fake_run(tmp_path)
    job = hold_lock_in_child(paths)
    try:
        began = time.monotonic()
        ex.cancel(paths, Attempt(paths.run_id, 1, adopted=True))
        assert time.monotonic() - began < 5.0
        assert not is_locked(paths)
    finally:
        if job.poll() is None:
            job.kill()
        job.wait()
    assert job.returncode == -signal.SIGTERM


def test_an_attempt_whose_run_was_cancelled_before_it_launched_launches_nothing(tmp_path):
    paths = fake_run(tmp_path)
    write_record(paths, RunRecord(run_id=paths.run_id, executor="local", cancel_requested=True))
    assert run_attempt(str(paths.root), 1, False, sys.executable) == 128 + signal.SIGTERM
    assert read_attempts(paths) == [] and not is_locked(paths)


def test_an_attempt_cancelled_while_it_launched_stops_its_own_job(tmp_path, monkeypatch):
    """The cancel found no pid to signal yet; the task sees cancel_requested and stops the job."""
    from weldsim_hpc.executors import local
    from weldsim_hpc.executors.record import update_record

    paths = fake_run(tmp_path)
    write_record(paths, RunRecord(run_id=paths.run_id, executor="local"))
    real_launch = local.launch
    started = {}

    def launch_then_cancel(root, ranks, **kw):
        proc = real_launch(root, 1, entry=("-c", "import time; time.sleep(60)"), **kw)
        started["pid"] = proc.pid
        update_record(paths, cancel_requested=True)  # the agent's cancel lands right now
        return proc

    monkeypatch.setattr(local, "launch", launch_then_cancel)
    began = time.monotonic()
    code = run_attempt(str(paths.root), 2, False, sys.executable, cancel_grace_s=5.0)
    assert code == 128 + signal.SIGTERM and time.monotonic() - began < 5.0
    assert attempts_of(paths) == [(1, 128 + signal.SIGTERM)]
    assert not is_live(started["pid"]) and not is_locked(paths)


# --- real runs through an Agent in this process -------------------------------------------------
@REAL
def test_agent_runs_the_ci_example_with_the_metrics_of_weldsim_run(tracker, ci_reference):
    root = tracker.root()
    paths = prepare_run(ci_case(), root, ranks=2)
    agent = tracker.agent(root)
    record = agent.submit(paths.run_id, "local", {"ntasks": 2})
    assert record.state is RunState.QUEUED and record.resources.ntasks == 2 and record.executor == "local"
    assert agent.active() == [paths.run_id]
    record = agent.wait(paths.run_id, timeout=240)
    assert record.state is RunState.COMPLETED, record
    assert history(record) == ["queued", "running", "completed"]
    assert attempts_of(paths) == [(1, 0)] and record.resubmissions == 0
    assert_metrics_close(physics_metrics(paths), ci_reference, rel=1e-9)
    wait_for(lambda: agent.active() == [], 10, "the agent to stop following the run")
    # a final run: cancel changes nothing, a second submit is refused, and so is a resume
    assert agent.cancel(paths.run_id).state is RunState.COMPLETED
    with pytest.raises(AgentError, match="already submitted"):
        agent.submit(paths.run_id, "local")
    with pytest.raises(AgentError, match="already completed"):
        agent.submit(paths.run_id, "local", resume=True)
    assert "completed" in agent.logs(paths.run_id) and attempts_of(paths) == [(1, 0)]


@REAL
def test_cancel_while_running_stops_every_process_and_keeps_the_run_directory(tracker):
    root = tracker.root()
    paths = prepare_run(endless_case(), root, ranks=2)
    agent = tracker.agent(root)
    agent.submit(paths.run_id, "local", {"ntasks": 2})
    entry = wait_running(paths, rows=1)
    wait_for(lambda: agent.status(paths.run_id).state is RunState.RUNNING, 20, "state running")
    assert is_same_process(entry["pid"], entry["start_time"])  # attempts.json: the launcher's pid + start
    job = session_processes(entry["pid"])
    assert len(job) >= 3, job  # mpirun and its two ranks
    began = time.monotonic()
    record = agent.cancel(paths.run_id)
    took = time.monotonic() - began
    assert record.state is RunState.CANCELLED and record.cancel_requested, record
    assert record.reason == "cancelled on request" and history(record) == ["queued", "running", "cancelled"]
    assert took < agent.config.cancel_grace_s + 5, took
    assert wait_gone(job, 3.0) == {}, "processes of the cancelled job still run"
    assert not is_locked(paths)
    # the run directory and its partial progress stay
    assert paths.case_json.is_file() and paths.mesh_xdmf.is_file() and paths.progress_h5.is_file()
    from weldsim_hpc.progress_reader import ProgressReader

    with ProgressReader(paths.progress_h5) as reader:
        rows = reader.poll().rows
    assert rows and rows[-1].percent < 100.0
    assert not paths.metrics_json.exists()
    # no second attempt, now or later
    time.sleep(3 * agent.config.poll_s + 2)
    assert len(read_attempts(paths)) == 1 and agent.active() == []
    assert read_record(paths).state is RunState.CANCELLED
    assert not any(session_processes(entry["pid"]))


@REAL
def test_cancel_right_after_submit_never_lets_the_job_run(tracker):
    root = tracker.root()
    paths = prepare_run(endless_case(), root, ranks=2)
    agent = tracker.agent(root)
    agent.submit(paths.run_id, "local", {"ntasks": 2})
    record = agent.cancel(paths.run_id)
    assert record.state is RunState.CANCELLED, record
    time.sleep(3)
    for a in read_attempts(paths):
        assert not session_processes(a["pid"]), "the job started after its cancel"
    assert len(read_attempts(paths)) <= 1 and not paths.metrics_json.exists()
    assert read_record(paths).state is RunState.CANCELLED


# --- real runs through the daemon ------------------------------------------------------------------
@REAL
def test_sigkilled_daemon_leaves_the_job_running_and_a_new_agent_adopts_it(tracker, long_reference):
    root = tracker.root()
    paths = prepare_run(long_case(), root, ranks=2)
    client = tracker.daemon(root)
    first_pid = int(client.info["pid"])
    reply = client.request("submit", run_id=paths.run_id, executor="local", resources={"ntasks": 2})
    assert reply["record"]["state"] == "queued"
    entry = wait_running(paths, rows=1)
    job = session_processes(entry["pid"])
    listening = listening_addresses(first_pid)  # its RPC port and dask's HTTP servers, on loopback only
    assert f"127.0.0.1:{client.info['port']}" in listening and len(listening) >= 2, listening
    assert all(a.startswith("127.0.0.1:") for a in listening), listening

    os.kill(first_pid, signal.SIGKILL)
    wait_for(lambda: not is_live(first_pid), 10, "the agent to die")
    assert all(is_live(p, t) for p, t in job.items()) and is_locked(paths)  # the job did not notice

    client = tracker.daemon(root)  # a new agent: reconciles at start
    assert int(client.info["pid"]) != first_pid
    assert client.request("ping")["active"] == [paths.run_id]
    record = wait_final(paths)
    assert record.state is RunState.COMPLETED, record
    assert attempts_of(paths) == [(1, 0)] and record.resubmissions == 0  # adopted, never started again
    assert "completed" in history(record) and "lost" not in history(record)
    assert not (root / paths.run_id / "progress.1.h5").exists()
    assert wait_gone(job, 10) == {}
    assert_metrics_close(physics_metrics(paths), long_reference, rel=1e-9)


@REAL
def test_agent_and_job_sigkilled_then_lost_and_resumed_exactly_once(tracker, long_reference):
    root = tracker.root()
    paths = prepare_run(long_case(), root, ranks=2)
    client = tracker.daemon(root)
    agent_pid = int(client.info["pid"])
    client.request("submit", run_id=paths.run_id, executor="local", resources={"ntasks": 2})
    entry = wait_running(paths, rows=1, ckpts=1)  # at least one checkpoint to resume from

    os.kill(agent_pid, signal.SIGKILL)
    job = kill_session(entry["pid"])  # the node's processes die with it: mpirun and the ranks
    assert len(job) >= 3
    assert wait_gone({agent_pid: proc_stat(agent_pid)[4] if proc_stat(agent_pid) else 0, **job}, 15) == {}
    assert not is_locked(paths) and read_record(paths).state is RunState.RUNNING

    client = tracker.daemon(root)  # reconciles: lost, then resubmitted once with --resume
    record = wait_final(paths)
    assert record.state is RunState.COMPLETED, record
    assert record.resubmissions == 1 and record.resume
    assert attempts_of(paths) == [(1, EXIT_LOST), (2, 0)]
    states = history(record)
    assert states[:2] == ["queued", "running"] and states[-1] == "completed"
    assert states.count("lost") == 1 and "failed" not in states
    lost_at = states.index("lost")
    assert states[lost_at + 1] == "queued" and "resubmitted after" in record.history[lost_at + 1][2]
    assert (paths.root / "progress.1.h5").is_file()  # the first attempt's progress, kept
    assert "resuming from step" in paths.solver_log.read_text()
    # every result equals the uninterrupted run's, n_time_steps too (the whole simulation's steps)
    assert_metrics_close(physics_metrics(paths), long_reference, rel=1e-6)


# --- refusals ---------------------------------------------------------------------------------------
def test_submit_of_an_invalid_or_unprepared_run_is_a_clear_error(tracker):
    root = tracker.root()
    agent = tracker.agent(root)
    with pytest.raises(RunIdError, match=r"invalid run id '\.\./x'"):
        agent.submit("../x", "local")
    with pytest.raises(AgentError, match=f"no prepared run abcdefabcdef under {root}"):
        agent.submit("abcdefabcdef", "local")
    (root / "bbbbbbbbbbbb").mkdir()  # a directory, but not a prepared run (no case.json)
    with pytest.raises(AgentError, match="no prepared run bbbbbbbbbbbb"):
        agent.submit("bbbbbbbbbbbb", "local")
    for call in (agent.status, agent.cancel, agent.logs):
        with pytest.raises(WeldSimError, match="invalid run id"):
            call("../x")
    assert agent.active() == [] and not (root / "bbbbbbbbbbbb" / "executor.json").exists()
    agent.close()

    client = tracker.daemon(root)  # the same errors come back over the wire, as text
    with pytest.raises(AgentError, match=r"invalid run id '\.\./x'"):
        client.request("submit", run_id="../x", executor="local")
    with pytest.raises(AgentError, match="no prepared run abcdefabcdef"):
        client.request("submit", run_id="abcdefabcdef", executor="local")
    with pytest.raises(AgentError, match="unknown request 'shutdown_everything'"):
        client.request("shutdown_everything")
    with pytest.raises(AgentError, match="ntasks"):
        client.request("submit", run_id="bbbbbbbbbbbb", resources={"ntasks": 0})


def test_two_agents_on_one_runs_root_the_second_refuses(tracker):
    root = tracker.root()
    first = tracker.agent(root)
    with pytest.raises(AgentRunning, match=f"another agent already owns {root}"):
        Agent(tracker.config(root)).start()
    # a daemon for the same root refuses too, and says why
    config = tracker.config(root)
    proc = subprocess.run([sys.executable, "-m", "weldsim_hpc.executors.rpc", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and f"weldsim agent: another agent already owns {root}" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(AgentUnavailable, match="the agent exited with code"):
        start_daemon(config)
    assert read_agent_file(config) is None
    first.close()  # the lock goes with the agent: now a daemon may own the root
    client = tracker.daemon(root)
    pid = int(client.info["pid"])
    assert start_daemon(config).info["pid"] == pid  # a second daemon loses the race to the first
    with pytest.raises(AgentRunning):
        Agent(config).start()


def test_daemon_survives_strangers_and_stops_on_request_and_on_sigterm(tracker):
    import socket
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    from weldsim_hpc.executors.rpc import stop_agent

    root = tracker.root()
    config = tracker.config(root)
    client = tracker.daemon(root)
    pid, port = int(client.info["pid"]), int(client.info["port"])
    agent_file = root / ".agent" / "agent.json"
    assert oct(agent_file.stat().st_mode & 0o777) == "0o600"  # the key is the owner's only
    with pytest.raises(AuthenticationError):
        Client(("127.0.0.1", port), authkey=b"not the key")
    socket.create_connection(("127.0.0.1", port)).close()  # connects and says nothing
    silent = socket.create_connection(("127.0.0.1", port))  # connects and never answers
    try:
        assert client.request("ping", timeout_s=10)["pid"] == pid  # still serving everyone else
    finally:
        silent.close()
    began = time.monotonic()
    assert stop_agent(config, timeout_s=20) == pid
    assert time.monotonic() - began < 10 and not is_live(pid) and not agent_file.exists()

    client = tracker.daemon(root)
    pid = int(client.info["pid"])
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not is_live(pid), 15, "the agent to stop on SIGTERM")
    assert not agent_file.exists()
    assert "Traceback" not in (root / ".agent" / "agent.log").read_text()
