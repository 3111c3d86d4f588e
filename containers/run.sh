#!/usr/bin/env bash
# Run one prepared run directory in the image: the job step of a batch script.
#
#   bash containers/run.sh [OPTIONS] IMAGE RUN_DIR [--resume]
#
# Inside a Slurm allocation (SLURM_JOB_ID set) this is
#   srun --mpi=pmix [-n N] apptainer exec --bind RUNS:RUNS[,B:B...] IMAGE \
#        python3 -m weldsim_hpc.run RUN_DIR [--resume]
# where RUNS is the directory holding RUN_DIR (the runs root). Outside Slurm the same
# command runs without srun (one rank). The number of ranks must equal the case's
# solver.ranks (the entry point refuses any other size): request it with sbatch -n.
#
# Options:
#   -n N          srun -n N (default: the allocation's task count)
#   --mpi TYPE    srun --mpi=TYPE (default pmix; it must match the image's OpenMPI 4.1)
#   --bind PATH   bind another absolute host path at the same place (repeatable)
#   --no-srun     run without srun even inside an allocation
#   --dry-run     print the command instead of running it
# APPTAINER=/path/to/singularity chooses the container binary (default: apptainer).
set -euo pipefail

die() { printf 'containers/run.sh: %s\n' "$1" >&2; exit "${2:-2}"; }
usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

ntasks=""
mpi=pmix
binds=()
use_srun=auto
dry_run=0
positional=()

while [ "$#" -gt 0 ]; do
  case "$1" in
    -n) [ "$#" -ge 2 ] || die "-n needs a number"; ntasks="$2"; shift 2 ;;
    --mpi) [ "$#" -ge 2 ] || die "--mpi needs a plugin name"; mpi="$2"; shift 2 ;;
    --mpi=*) mpi="${1#--mpi=}"; shift ;;
    --bind) [ "$#" -ge 2 ] || die "--bind needs a path"; binds+=("$2"); shift 2 ;;
    --no-srun) use_srun=no; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --resume) positional+=("$1"); shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) positional+=("$1"); shift ;;
  esac
done

resume=()
args=()
for a in "${positional[@]}"; do
  if [ "$a" = "--resume" ]; then resume=(--resume); else args+=("$a"); fi
done
[ "${#args[@]}" -eq 2 ] || die "expected IMAGE and RUN_DIR (got ${#args[@]} arguments); see --help"
image="${args[0]}"
run_dir="${args[1]}"

[[ "$ntasks" =~ ^([1-9][0-9]*)?$ ]] || die "-n must be a positive whole number (got '$ntasks')"
[[ "$mpi" =~ ^[A-Za-z0-9_]+$ ]] || die "--mpi must be a plugin name such as pmix (got '$mpi')"

absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

image="$(absolute "$image")"
case "$image" in *.sif|*.simg) ;; *) die "the image must be a .sif or .simg file (got $image)" ;; esac
[ -f "$image" ] || die "the image $image does not exist (build it with containers/build.sh)"

run_dir="$(absolute "$run_dir")"
run_dir="${run_dir%/}"
[ -f "$run_dir/case.json" ] || die "$run_dir is not a prepared run directory (no case.json)"
runs="${run_dir%/*}"
[ -n "$runs" ] || die "the run directory must not be directly under / (got $run_dir)"

# Apptainer's --bind is a comma-separated list of SRC:DEST: no commas or colons in a path.
bind_spec=""
for p in "$runs" "${binds[@]}"; do
  case "$p" in /*) ;; *) die "bind paths must be absolute (got '$p')" ;; esac
  case "$p" in *,*|*:*) die "bind path '$p' contains ',' or ':' which apptainer --bind cannot express" ;; esac
  bind_spec="${bind_spec:+$bind_spec,}$p:$p"
done

apptainer="${APPTAINER:-apptainer}"
cmd=("$apptainer" exec --bind "$bind_spec" "$image" python3 -m weldsim_hpc.run "$run_dir" "${resume[@]}")

if [ "$use_srun" = auto ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then use_srun=yes; else use_srun=no; fi
fi
[ "$use_srun" = yes ] || [ -z "$ntasks" ] || die "-n $ntasks needs srun: run inside a Slurm allocation (without --no-srun)"
if [ "$use_srun" = yes ]; then
  srun_cmd=(srun "--mpi=$mpi")
  [ -z "$ntasks" ] || srun_cmd+=(-n "$ntasks")
  cmd=("${srun_cmd[@]}" "${cmd[@]}")
fi

if [ "$dry_run" -eq 1 ]; then
  printf '%q' "${cmd[0]}"
  printf ' %q' "${cmd[@]:1}"
  printf '\n'
  exit 0
fi
exec "${cmd[@]}"
