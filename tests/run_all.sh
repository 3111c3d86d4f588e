#!/usr/bin/env bash
# The whole test suite: the plain pytest suite, then the MPI suite on 2 ranks.
# Fails if either fails. Run after `bash containers/setup.sh --dev` (see README.md).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
py=.venv/bin/python  # `python` on PATH may be another interpreter without dolfinx

echo "== plain suite =="
"$py" -m pytest tests --ignore=tests/mpi --durations=15 -p no:cacheprovider "$@"
plain=$?

echo "== MPI suite (2 ranks) =="
timeout 900 mpirun --allow-run-as-root --oversubscribe -n 2 "$py" -m pytest --with-mpi tests/mpi -p no:cacheprovider -q
mpi=$?

echo "== summary: plain suite exit $plain, MPI suite exit $mpi =="
[ "$plain" -eq 0 ] && [ "$mpi" -eq 0 ]
