#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests marked `slurm` (tests/test_slurm.py).
#
#   .ci/slurm.sh start    install Debian's slurm-wlm (+ munge) if absent, configure, start the
#                         daemons, wait until the node is idle
#   .ci/slurm.sh stop     cancel the test cluster's jobs, stop slurmd, slurmctld and munged
#   .ci/slurm.sh status   daemons, node and queue; exit 0 when the node accepts jobs
#
# Idempotent (start on a running cluster only checks it; stop on a stopped one does nothing).
# Needs root and apt-get (a fresh Debian/Ubuntu CI machine). The recipe (known to work on
# Debian 12's slurm-wlm 22.05): SlurmUser=root, munge auth, proctrack/linuxproc, task/none, cons_tres with
# CR_Core, no cgroup.conf (22.05 refuses CgroupPlugin=disabled), no accounting (sacct stays
# disabled: mgelib reads job states from squeue/scontrol and the run store).
# Overrides: SLURM_CI_TIMEOUT (seconds to wait for the node, default 90).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
TIMEOUT=${SLURM_CI_TIMEOUT:-90}
NODE=$(hostname -s)

log() { echo "[slurm.sh] $*" >&2; }
die() {
    log "ERROR: $*"
    dump_logs
    exit 1
}

dump_logs() {
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [[ -f $f ]]; then
            echo "----- last lines of $f -----" >&2
            tail -n 40 "$f" >&2 || true
        fi
    done
}

alive() { # alive PIDFILE: the process named in the pid file is running
    [[ -f $1 ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null
}

need_root() {
    [[ $(id -u) -eq 0 ]] || {
        log "ERROR: must run as root (installs packages, starts daemons)"
        exit 1
    }
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v munged >/dev/null && command -v sinfo >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

start_munge() {
    # A random 1 KiB key, owned by munge, mode 400 (the package's postinst may have left a
    # shorter one; keep a key that already has the right size so a running munged stays valid).
    if [[ ! -f $MUNGE_KEY || $(stat -c %s "$MUNGE_KEY") -ne 1024 ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=$MUNGE_KEY bs=1024 count=1 status=none
        if alive $MUNGE_PID; then kill "$(cat $MUNGE_PID)"; sleep 1; fi
    fi
    chown munge:munge $MUNGE_KEY /etc/munge
    chmod 400 $MUNGE_KEY
    chmod 700 /etc/munge
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    if ! alive $MUNGE_PID; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged --force
    fi
    for _ in $(seq 20); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "munge does not work (munge -n | unmunge fails)"
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    # RealMemory a little under the machine's: slurmd drains a node that has less than configured.
    mem=$(awk '/MemTotal/ {m = int($2 / 1024); print m - int(m / 20) - 256}' /proc/meminfo)
    mkdir -p "$CONF_DIR" "$SPOOL_CTLD" "$SPOOL_D" "$LOG_DIR" "$RUN_DIR"
    rm -f "$CONF_DIR/cgroup.conf" # none at all: see the header
    cat >"$CONF.new" <<EOF
# Written by mgelib's .ci/slurm.sh: a single-node test cluster (no accounting, no cgroups).
ClusterName=mgelib-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Quick turnaround for tests: a cancelled job gets SIGKILL 5 s after SIGTERM; finished jobs
# stay visible to squeue/scontrol for 10 minutes (there is no sacct).
KillWait=5
MinJobAge=600
MaxArraySize=1001
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    mv "$CONF.new" "$CONF"
}

node_state() { sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n 1 | tr -d '*~#$@^-'; }

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
        idle | mix | alloc) return 0 ;;
        down | drain | drng | fail)
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
            ;;
        esac
        sleep 1
    done
    sinfo -N -l >&2 || true
    scontrol show node "$NODE" >&2 || true
    die "node $NODE is not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')"
}

start() {
    need_root
    install_packages
    start_munge
    if alive $RUN_DIR/slurmctld.pid && alive $RUN_DIR/slurmd.pid; then
        log "slurmctld and slurmd already running"
    else
        write_conf
        if ! alive $RUN_DIR/slurmctld.pid; then
            log "starting slurmctld"
            slurmctld || die "slurmctld did not start"
        fi
        for _ in $(seq 20); do scontrol ping >/dev/null 2>&1 && break; sleep 0.5; done
        scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer (scontrol ping)"
        if ! alive $RUN_DIR/slurmd.pid; then
            log "starting slurmd"
            slurmd || die "slurmd did not start"
        fi
    fi
    wait_idle
    log "node $NODE is $(node_state): $(nproc) CPUs, partition $(sinfo --noheader --format=%P | head -n 1)"
}

stop_pid() { # stop_pid PIDFILE NAME
    alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    log "$2 ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    need_root
    if alive $RUN_DIR/slurmctld.pid; then
        # A private test cluster: cancel what the tests left, so no job step outlives slurmd.
        local jobs
        jobs=$(squeue --noheader --format=%A 2>/dev/null | sort -u | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 30); do
                [[ -z $(squeue --noheader --format=%A 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_pid $RUN_DIR/slurmd.pid slurmd
    stop_pid $RUN_DIR/slurmctld.pid slurmctld
    stop_pid $MUNGE_PID munged
    log "stopped"
}

status() {
    local rc=0
    for d in slurmctld slurmd; do
        if alive $RUN_DIR/$d.pid; then echo "$d: running (pid $(cat $RUN_DIR/$d.pid))"; else
            echo "$d: stopped"
            rc=1
        fi
    done
    if alive $MUNGE_PID; then echo "munged: running (pid $(cat $MUNGE_PID))"; else echo "munged: stopped"; fi
    if ((rc == 0)); then
        sinfo -N -l || rc=1
        squeue --array || true
        case $(node_state || true) in idle | mix | alloc) ;; *) rc=1 ;; esac
    fi
    return $rc
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
