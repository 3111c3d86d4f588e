#!/bin/bash
# Records real Slurm 22.05 output for tests/executors/test_slurm_text.py (files prefixed h2_).
set -u
# Needs SIG and DASK (job ids of the two jobs described below) in the environment.
D=/work/main/tests/executors/data
cd /tmp/h2_slurm
FMT='%i|%T|%r|%M|%N|%j'
SF=JobID,JobName,State,ExitCode,Start,End,Elapsed,NodeList,Reason
sq() { squeue --noheader --format="$FMT" --jobs="$1"; }
sa() { sacct --parsable2 --noheader --duplicates --format=$SF --jobs="$1"; }
state() { squeue --noheader --format=%T --jobs="$1" 2>/dev/null | head -1; }
wait_state() { for i in $(seq 1 ${3:-120}); do [ "$(state $1)" = "$2" ] && return 0; sleep 1; done; echo "timeout waiting $1 $2" >&2; return 1; }
wait_gone() { for i in $(seq 1 ${2:-180}); do s=$(sa "$1" | head -1 | cut -d'|' -f3); case "$s" in COMPLETED|FAILED|CANCELLED*|TIMEOUT) return 0;; esac; sleep 1; done; echo "timeout $1" >&2; return 1; }

sbatch --parsable -J h2-ok -o /tmp/h2_slurm/%j.out --no-requeue --wrap 'srun --mpi=none -n 1 true; sleep 2' > $D/h2_sbatch_parsable.txt
OK=$(cat $D/h2_sbatch_parsable.txt)
FAIL=$(sbatch --parsable -J h2-fail -o /tmp/h2_slurm/%j.out --no-requeue --wrap 'srun --mpi=none -n 1 sh -c "exit 3"; exit 3')
HELD=$(sbatch --parsable -J h2-held -o /tmp/h2_slurm/%j.out --hold --wrap 'sleep 1')
ARR=$(sbatch --parsable -J h2-array -o /tmp/h2_slurm/%A_%a.out --array=5-7 --hold --wrap 'sleep 2')
CANC=$(sbatch --parsable -J h2-cancel -o /tmp/h2_slurm/%j.out --no-requeue --wrap 'srun --mpi=none -n 1 sleep 120')
echo "ok=$OK fail=$FAIL held=$HELD arr=$ARR canc=$CANC"
wait_state $CANC RUNNING 240
sleep 2
sq $OK,$FAIL,$HELD,$ARR,$CANC > $D/h2_squeue_mixed.txt
sa $CANC > $D/h2_sacct_running.txt
scontrol release ${ARR}_5
sleep 1
sq $ARR > $D/h2_squeue_array.txt
scancel $CANC
scancel $HELD
sleep 1
sq $CANC > $D/h2_squeue_just_ended.txt 2>&1  # cancelled a second ago: nothing
wait_gone ${ARR}_5
scancel $ARR
wait_gone $OK; wait_gone $FAIL; wait_gone $CANC

REQ=$(sbatch --parsable -J h2-requeue -o /tmp/h2_slurm/%j.out --requeue --wrap 'srun --mpi=none -n 1 sleep 8')
wait_state $REQ RUNNING 240
sleep 3
scontrol requeue $REQ
sq $REQ > $D/h2_squeue_requeue_completing.txt
sleep 2
sq $REQ > $D/h2_squeue_requeue_pending.txt
sa $REQ > $D/h2_sacct_requeue_pending.txt
for i in $(seq 1 240); do n=$(sa $REQ | grep -c "^$REQ|.*|COMPLETED|"); [ "$n" -ge 1 ] && break; sleep 1; done

sa $OK > $D/h2_sacct_completed.txt
sa $FAIL > $D/h2_sacct_failed.txt
sa $CANC,$HELD > $D/h2_sacct_cancelled.txt
sa $ARR > $D/h2_sacct_array.txt
sa $REQ > $D/h2_sacct_requeued.txt
sa $SIG > $D/h2_sacct_timeout_usr1.txt     # SIG: a --time=1 --signal=USR1@50 job whose srun step traps USR1 and exits 4
sa $DASK > $D/h2_sacct_dask_worker.txt     # DASK: a SLURMCluster worker job (slurm_cluster_kwargs) after cluster.close()
sa 999999 > $D/h2_sacct_missing.txt
sleep 70  # MinJobAge=60: slurmctld forgets the finished job
squeue --noheader --format="$FMT" --jobs=$OK > /dev/null 2> $D/h2_squeue_invalid_job_stderr.txt  # exit code 1
echo done

# The SIG job (sbatch sig.sh): USR1 reached only the srun step ("step got USR1" after 6 s), neither
# the batch shell's trap nor a python child of the batch shell printed anything:
#   #!/bin/bash
#   #SBATCH --time=1
#   #SBATCH --signal=USR1@50
#   #SBATCH --no-requeue
#   #SBATCH -J h2-sig
#   #SBATCH -o /tmp/h2_slurm/sig-%j.out
#   trap 'echo "$(date +%T) batch shell got USR1"' USR1
#   /usr/bin/python3 -c 'import signal,time; signal.signal(signal.SIGUSR1, lambda *a: print(time.strftime("%T"), "batch child got USR1", flush=True)); time.sleep(85)' &
#   echo "$(date +%T) start; SLURM_EXPORT_ENV=${SLURM_EXPORT_ENV-unset}"
#   srun --mpi=none -n 1 bash -c 'trap "echo \$(date +%T) step got USR1; exit 4" USR1; sleep 85 & wait'
#   echo "$(date +%T) srun rc=$?"   # (prints date's status, not srun's: sacct shows the step FAILED 4:0)
#   wait
#   echo "$(date +%T) end"

# h2_squeue_states_all_failed.txt: a job that failed a few seconds earlier (within MinJobAge=60 s):
#   J=$(sbatch --parsable -J h2-stall --no-requeue --wrap 'exit 3'); (wait until sacct says FAILED)
#   squeue --noheader --format="$FMT" --jobs=$J                  # prints nothing
#   squeue --noheader --format="$FMT" --states=all --jobs=$J     # the FAILED row
