#!/usr/bin/env bash
# Stop the single-node Slurm that start.sh started: slurmd, slurmctld, slurmdbd, munged.
#
#   bash slurm/local-cluster/stop.sh [--cancel-jobs]
#
# Idempotent: a daemon that is not running is skipped without error. Jobs are left alone
# (slurmctld saves them; running job steps keep running under slurmstepd and are picked up
# again by the next start.sh) unless --cancel-jobs is given: then every job in squeue is
# cancelled first and stop.sh waits (bounded) for them to leave the node.
# Daemons are found by their pid files (checked against /proc/<pid>/comm), or by their exact
# binary /usr/sbin/<name> if the pid file is gone; never by a name pattern.
set -euo pipefail

CANCEL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cancel-jobs) CANCEL=1; shift ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "stop.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "stop.sh: run as root" >&2; exit 1; }

log() { printf '[stop.sh] %s\n' "$*"; }

pid_of() {  # pid_of NAME PIDFILE -> the running daemon's pid, or fails
    local name=$1 pidfile=$2 pid comm
    if [ -r "$pidfile" ]; then
        pid=$(tr -dc '0-9' <"$pidfile")
        if [ -n "$pid" ] && comm=$(cat "/proc/$pid/comm" 2>/dev/null) && [ "$comm" = "$name" ]; then
            echo "$pid"; return 0
        fi
    fi
    for comm in /proc/[0-9]*/comm; do
        pid=${comm#/proc/}; pid=${pid%/comm}
        if [ "$(cat "$comm" 2>/dev/null)" = "$name" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "/usr/sbin/$name" ]; then
            echo "$pid"; return 0
        fi
    done
    return 1
}

stop_daemon() {  # stop_daemon NAME PIDFILE: SIGTERM, up to 15 s, then SIGKILL
    local name=$1 pidfile=$2 pid i
    if ! pid=$(pid_of "$name" "$pidfile"); then
        log "$name is not running"
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
        log "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

if [ "$CANCEL" = 1 ]; then
    if pid_of slurmctld /run/slurmctld.pid >/dev/null && jobs=$(squeue --noheader --format=%i 2>/dev/null); then
        if [ -n "$jobs" ]; then
            log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086  # job ids: digits and _[] only
            scancel $jobs || true
            for i in $(seq 1 60); do  # up to 30 s for them to end (KillWait is 5 s)
                [ -z "$(squeue --noheader --format=%i 2>/dev/null)" ] && break
                sleep 0.5
            done
            left=$(squeue --noheader --format=%i 2>/dev/null || true)
            [ -z "$left" ] || log "still in squeue after 30 s: $(echo $left)"
        fi
    else
        log "slurmctld is not running: no jobs to cancel"
    fi
fi

stop_daemon slurmd /run/slurmd.pid
stop_daemon slurmctld /run/slurmctld.pid
stop_daemon slurmdbd /run/slurmdbd.pid
stop_daemon munged /run/munge/munged.pid
log "stopped"
