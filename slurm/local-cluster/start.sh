#!/usr/bin/env bash
# Start (or check) a real single-node Slurm on this machine: munge, slurmdbd on the local
# MariaDB, slurmctld and slurmd. For tests and for trying the cluster path on a laptop.
#
#   bash slurm/local-cluster/start.sh [--timeout SECONDS]
#
# Idempotent: what is already up is left alone, so a second call returns in about a
# second. Tolerates what an earlier run left behind (stale pid files, spool state, a
# running daemon, a node left DOWN or DRAINED: it is resumed). Needs root, Debian's
# slurm-wlm, slurmdbd, slurm-wlm-mysql-plugin and munge, and a reachable MariaDB/MySQL.
# See README.md next to this file; stop everything with stop.sh.
#
# Settings (environment, with defaults):
#   WELDSIM_SLURM_CLUSTER=weldsim  WELDSIM_SLURM_PARTITION=debug
#   WELDSIM_SLURM_START_TIMEOUT=60 (seconds until the node is idle and sacct answers)
#   WELDSIM_SLURM_DB_HOST=127.0.0.1  WELDSIM_SLURM_DB_PORT=3306
#   WELDSIM_SLURM_DB_ADMIN=root  WELDSIM_SLURM_DB_ADMIN_PASSWORD=  (creates the db/user)
#   WELDSIM_SLURM_DB_NAME=slurm_acct_db  WELDSIM_SLURM_DB_USER=slurm
set -euo pipefail

CLUSTER=${WELDSIM_SLURM_CLUSTER:-weldsim}
PARTITION=${WELDSIM_SLURM_PARTITION:-debug}
TIMEOUT=${WELDSIM_SLURM_START_TIMEOUT:-60}
DB_HOST=${WELDSIM_SLURM_DB_HOST:-127.0.0.1}
DB_PORT=${WELDSIM_SLURM_DB_PORT:-3306}
DB_ADMIN=${WELDSIM_SLURM_DB_ADMIN:-root}
DB_ADMIN_PASSWORD=${WELDSIM_SLURM_DB_ADMIN_PASSWORD:-}
DB_NAME=${WELDSIM_SLURM_DB_NAME:-slurm_acct_db}
DB_USER=${WELDSIM_SLURM_DB_USER:-slurm}
CONF_DIR=/etc/slurm  # where Debian's Slurm looks for slurm.conf and slurmdbd.conf

SLURM_CONF_FILE=$CONF_DIR/slurm.conf
SLURMDBD_CONF_FILE=$CONF_DIR/slurmdbd.conf
STATE_DIR=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
DBD_PID=/run/slurmdbd.pid
MUNGE_DIR=/run/munge
MUNGE_PID=$MUNGE_DIR/munged.pid
LOCK_FILE=/run/weldsim-slurm-local.lock

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#--timeout=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "start.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$TIMEOUT" in ''|*[!0-9]*) echo "start.sh: --timeout must be whole seconds, got '$TIMEOUT'" >&2; exit 2 ;; esac

T0=$SECONDS
DEADLINE=$((SECONDS + TIMEOUT))
log() { printf '[start.sh %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '[start.sh] ERROR: %s\n' "$*" >&2; exit 1; }
time_left() { [ "$SECONDS" -lt "$DEADLINE" ]; }

[ "$(id -u)" -eq 0 ] || die "run as root (the daemons and /etc/slurm need it)"
for cmd in munged munge unmunge slurmdbd slurmctld slurmd sacctmgr scontrol sinfo sacct mysql flock; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found: install slurm-wlm slurmdbd slurm-wlm-mysql-plugin munge mariadb-client (containers/setup.sh does)"
done

# One start.sh at a time (two test sessions may call it together). Every daemon is
# started with fd 9 closed, or it would hold the lock for as long as it runs.
exec 9>"$LOCK_FILE"
flock -w "$TIMEOUT" 9 || die "another start.sh holds $LOCK_FILE for more than ${TIMEOUT}s"

# --- daemons: found by pid file, checked by /proc/<pid>/comm (never by a name pattern) ---
pid_of() {  # pid_of NAME PIDFILE -> prints the pid of the running daemon, or fails
    local name=$1 pidfile=$2 pid comm
    if [ -r "$pidfile" ]; then
        pid=$(tr -dc '0-9' <"$pidfile")
        if [ -n "$pid" ] && comm=$(cat "/proc/$pid/comm" 2>/dev/null) && [ "$comm" = "$name" ]; then
            echo "$pid"; return 0
        fi
    fi
    # no (valid) pid file: look for the exact binary, in case the pid file was removed
    for comm in /proc/[0-9]*/comm; do
        pid=${comm#/proc/}; pid=${pid%/comm}
        if [ "$(cat "$comm" 2>/dev/null)" = "$name" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "/usr/sbin/$name" ]; then
            echo "$pid"; return 0
        fi
    done
    return 1
}
clear_stale_pidfile() {  # a stale pid file could name an unrelated process that the daemon kills on start
    local name=$1 pidfile=$2
    if [ -e "$pidfile" ] && ! pid_of "$name" "$pidfile" >/dev/null; then
        log "removing stale $pidfile"
        rm -f "$pidfile"
    fi
}
stop_daemon() {  # stop_daemon NAME PIDFILE  (used only when a config file changed)
    local name=$1 pidfile=$2 pid i
    pid=$(pid_of "$name" "$pidfile") || return 0
    log "stopping $name (pid $pid) to apply the new configuration"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    rm -f "$pidfile"
}
wait_for() {  # wait_for DESCRIPTION COMMAND... : retry until COMMAND succeeds or the deadline passes
    local what=$1; shift
    until "$@" >/dev/null 2>&1; do
        time_left || die "timed out after ${TIMEOUT}s waiting for $what"
        sleep 0.3
    done
}

install_if_changed() {  # install_if_changed NEW DEST MODE -> 0 if DEST changed
    local new=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$new" "$dest"; then
        rm -f "$new"; chmod "$mode" "$dest"; return 1
    fi
    install -m "$mode" -o root -g root "$new" "$dest"
    rm -f "$new"
    log "wrote $dest"
    return 0
}

# --- 1. munge -----------------------------------------------------------------------------
[ -r /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (the munge package creates it; or run: mungekey)"
install -d -m 0755 -o munge -g munge "$MUNGE_DIR"
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    clear_stale_pidfile munged "$MUNGE_PID"
    if ! pid_of munged "$MUNGE_PID" >/dev/null; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged 2>/dev/null 9>&- || /usr/sbin/munged 9>&- \
            || die "munged did not start (see /var/log/munge/munged.log)"
    fi
    wait_for "munge (munge -n | unmunge)" munge_ok
fi

# --- 2. configuration ---------------------------------------------------------------------
NODE=$(hostname -s)
[ -n "$NODE" ] || die "hostname -s printed nothing"
HW=$(slurmd -C 2>/dev/null | head -n 1)
case "$HW" in NodeName=*) ;; *) die "slurmd -C printed no NodeName line: $HW" ;; esac
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$HW"; }
CPUS=$(field CPUs); MEM=$(field RealMemory)
[ -n "$CPUS" ] && [ -n "$MEM" ] || die "could not read CPUs/RealMemory from: $HW"
MEM=$((MEM * 95 / 100))  # a bit below what slurmd sees: a smaller reading later must not drain the node
HWLINE="CPUs=$CPUS Boards=$(field Boards) SocketsPerBoard=$(field SocketsPerBoard) CoresPerSocket=$(field CoresPerSocket) ThreadsPerCore=$(field ThreadsPerCore)"
CTLD_HOST=$NODE NODE_ADDR=""
if ! getent hosts "$NODE" >/dev/null; then  # an unresolvable host name: talk over loopback
    CTLD_HOST="$NODE(127.0.0.1)"; NODE_ADDR=" NodeAddr=127.0.0.1"
fi

# The slurmdbd password is made once and kept in slurmdbd.conf (mode 600).
DB_PASS=""
if [ -r "$SLURMDBD_CONF_FILE" ]; then
    DB_PASS=$(sed -n 's/^StoragePass=//p' "$SLURMDBD_CONF_FILE" | head -n 1)
fi
case "$DB_PASS" in ''|*[!A-Za-z0-9]*) DB_PASS=$(head -c 64 /dev/urandom | od -An -tx1 | tr -dc 'a-f0-9' | head -c 24) ;; esac

install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$SLURMD_SPOOL"
install -d -m 0700 "$STATE_DIR"

new_dbd=$(mktemp "$CONF_DIR/.slurmdbd.conf.XXXXXX")
chmod 600 "$new_dbd"
cat >"$new_dbd" <<EOF
# Written by slurm/local-cluster/start.sh (WeldSim HPC): a one-node test cluster. Edits are overwritten.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=$DB_HOST
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
DBD_CHANGED=0
install_if_changed "$new_dbd" "$SLURMDBD_CONF_FILE" 600 && DBD_CHANGED=1

new_conf=$(mktemp "$CONF_DIR/.slurm.conf.XXXXXX")
cat >"$new_conf" <<EOF
# Written by slurm/local-cluster/start.sh (WeldSim HPC): a one-node test cluster. Edits are overwritten.
# See /work/shared/SLURM-LOCAL.md for why each choice is what it is (no cgroups, no systemd here).
ClusterName=$CLUSTER
SlurmctldHost=$CTLD_HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
# small timings for tests: quick scheduling, quick kills, finished jobs leave slurmctld's
# memory after 60 s (sacct keeps them: it reads slurmdbd)
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
MinJobAge=60
InactiveLimit=0
Waittime=0
SlurmctldTimeout=60
SlurmdTimeout=60
NodeName=$NODE$NODE_ADDR $HWLINE RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
CONF_CHANGED=0
install_if_changed "$new_conf" "$SLURM_CONF_FILE" 644 && CONF_CHANGED=1

# --- 3. the accounting database (MariaDB) -------------------------------------------------
sql() { MYSQL_PWD=$DB_ADMIN_PASSWORD mysql --protocol=TCP -h "$DB_HOST" -P "$DB_PORT" -u "$DB_ADMIN" --batch --skip-column-names "$@"; }
sql -e 'SELECT 1' >/dev/null 2>&1 || die "cannot reach MariaDB/MySQL at $DB_HOST:$DB_PORT as $DB_ADMIN"
sql <<EOF || die "could not create the database $DB_NAME and user $DB_USER"
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';
EOF

# --- 4. slurmdbd, and the cluster registered in it ----------------------------------------
[ "$DBD_CHANGED" = 1 ] && stop_daemon slurmdbd "$DBD_PID"
dbd_ok() { sacctmgr --noheader --parsable2 show cluster format=cluster; }
if ! pid_of slurmdbd "$DBD_PID" >/dev/null; then
    clear_stale_pidfile slurmdbd "$DBD_PID"
    log "starting slurmdbd"
    slurmdbd 9>&- || die "slurmdbd did not start (see $LOG_DIR/slurmdbd.log)"
fi
wait_for "slurmdbd to answer (sacctmgr show cluster; log: $LOG_DIR/slurmdbd.log)" dbd_ok
if ! dbd_ok 2>/dev/null | grep -qxF "$CLUSTER"; then
    log "registering cluster $CLUSTER in slurmdbd"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr -i add cluster $CLUSTER failed"
fi

# --- 5. slurmctld -------------------------------------------------------------------------
# State saved under another ClusterName makes slurmctld refuse to start: keep it aside.
if [ -f "$STATE_DIR/clustername" ] && [ "$(cat "$STATE_DIR/clustername")" != "$CLUSTER" ]; then
    aside="$STATE_DIR.$(cat "$STATE_DIR/clustername").$(date +%s)"
    log "state in $STATE_DIR belongs to cluster '$(cat "$STATE_DIR/clustername")': moved to $aside"
    stop_daemon slurmctld "$CTLD_PID"
    mv "$STATE_DIR" "$aside"
    install -d -m 0700 "$STATE_DIR"
fi
[ "$CONF_CHANGED" = 1 ] && stop_daemon slurmctld "$CTLD_PID"
if ! pid_of slurmctld "$CTLD_PID" >/dev/null; then
    clear_stale_pidfile slurmctld "$CTLD_PID"
    log "starting slurmctld"
    slurmctld 9>&- || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
fi
ctld_ok() { scontrol ping | grep -q 'is UP'; }
wait_for "slurmctld to answer (scontrol ping; log: $LOG_DIR/slurmctld.log)" ctld_ok

# --- 6. slurmd ----------------------------------------------------------------------------
[ "$CONF_CHANGED" = 1 ] && stop_daemon slurmd "$SLURMD_PID"
if ! pid_of slurmd "$SLURMD_PID" >/dev/null; then
    clear_stale_pidfile slurmd "$SLURMD_PID"
    log "starting slurmd"
    slurmd 9>&- || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi

# --- 7. wait: the node usable (resumed if DOWN or DRAINED), sacct answering ---------------
node_state() { scontrol -o show node "$NODE" 2>/dev/null | sed -n 's/.* State=\([^ ]*\).*/\1/p'; }
last_resume=-100
state=""
while :; do
    state=$(node_state)
    case "+$state+" in
        *+DRAIN+*|*+DOWN+*|*+FAIL+*)
            # ReturnToService=2 brings a DOWN node back when slurmd registers; a DRAIN stays
            # until resumed. Resume either if it is still there a few seconds on.
            if [ "$state" != "${state#*DRAIN}" ] || [ $((SECONDS - T0)) -ge 5 ]; then
                if [ $((SECONDS - last_resume)) -ge 5 ]; then
                    log "node $NODE is $state: resuming it"
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    last_resume=$SECONDS
                fi
            fi ;;
        *+IDLE+*|*+MIXED+*|*+ALLOCATED+*)
            case "+$state+" in
                *+NOT_RESPONDING+*|*+POWER*|*+REBOOT*|*+INVALID*|*+MAINT+*) ;;
                *) break ;;
            esac ;;
    esac
    time_left || die "timed out after ${TIMEOUT}s: node $NODE is '${state:-unknown}' (see $LOG_DIR/slurmd.log, $LOG_DIR/slurmctld.log; scontrol show node $NODE)"
    sleep 0.5
done
sacct_ok() { sacct --noheader -X --starttime=now-1minute --format=JobID; }
wait_for "sacct to answer (slurmctld -> slurmdbd)" sacct_ok

log "cluster $CLUSTER is up: node $NODE ($state, $CPUS CPUs), partition $PARTITION, sacct answers"
