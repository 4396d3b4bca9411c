#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for running deploy/slurm.sbatch for real.
#
#   bash deploy/slurm/cluster.sh up     # installs munge + slurm-wlm (Debian) if missing, starts
#                                       # munged, slurmctld and slurmd; prints `export SLURM_CONF=...`
#   bash deploy/slurm/cluster.sh down   # stops exactly the daemons `up` started (by their pid files)
#
# Everything lives under $SLURM_STATE (default /tmp/dssl-slurm): slurm.conf, pid files, logs, spool.
# Root only (it installs packages and runs the daemons as root). The node is this host with all its
# cores declared as SLURM_NODE_CPUS (default 16) so that several one-thread peers share a core; processes are tracked without cgroups (proctrack/linuxproc) so it also runs in containers.
set -euo pipefail

STATE=${SLURM_STATE:-/tmp/dssl-slurm}
CONF=$STATE/slurm.conf

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    echo "slurm: installing munge and slurm-wlm from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq munge slurm-wlm >/dev/null
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=${SLURM_NODE_CPUS:-16}  # more than the cores: several 1-thread peers per core (config_overrides)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$STATE/spool" "$STATE/ctld" "$STATE/log" "$STATE/munge"
    cat > "$CONF" <<CONF
ClusterName=dssl
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/spool
StateSaveLocation=$STATE/ctld
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge "$STATE/munge" 2>/dev/null || true
    if ! munge -n >/dev/null 2>&1; then
        runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" 2>/dev/null \
            || munged --force --pid-file="$STATE/munge/munged.pid"
    fi
    munge -n | unmunge >/dev/null
}

wait_idle() {
    local i
    for i in $(seq 1 60); do
        if SLURM_CONF=$CONF sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then return 0; fi
        sleep 0.5
    done
    echo "slurm: the node did not come up; logs in $STATE/log" >&2
    SLURM_CONF=$CONF sinfo -N -l >&2 || true
    return 1
}

up() {
    install
    write_conf
    start_munge
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    wait_idle
    SLURM_CONF=$CONF scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    echo "slurm: single-node cluster up (${SLURM_NODE_CPUS:-16} CPUs declared on $(nproc) cores); run: export SLURM_CONF=$CONF"
}

stop_pidfile() {
    local file=$1 pid i
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    stop_pidfile "$STATE/slurmd.pid"
    stop_pidfile "$STATE/slurmctld.pid"
    stop_pidfile "$STATE/munge/munged.pid"
    echo "slurm: stopped (state kept in $STATE)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
