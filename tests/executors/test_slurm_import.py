"""dask-jobqueue is imported off the main thread without touching SIGINT (slurm_cluster_class)."""

import subprocess
import sys

SCRIPT = """
import signal, threading
from weldsim_hpc.executors.slurm import slurm_cluster_class
before = signal.getsignal(signal.SIGINT)
out = []
t = threading.Thread(target=lambda: out.append(slurm_cluster_class().__name__))
t.start(); t.join()
assert out == ["SLURMCluster"], out
assert signal.getsignal(signal.SIGINT) is before, "the import replaced the SIGINT handler"
print("ok")
"""


def test_slurm_cluster_class_imports_in_a_request_thread_and_keeps_sigint():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

