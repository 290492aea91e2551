#!/usr/bin/env bash
# A real two-node SLURM cluster on one machine, for tests and for trying `fpar submit`.
#
#   bash slurm/cluster.sh install   Debian packages (slurmctld, slurmd, slurmdbd, munge,
#                                   MariaDB); quick no-op when they are already there
#   bash slurm/cluster.sh start     munged, MariaDB, slurmdbd, slurmctld, slurmd n1 and n2;
#                                   returns once both nodes are idle (idempotent)
#   bash slurm/cluster.sh stop      cancels every job, stops exactly the daemons it started
#                                   (idempotent)
#   bash slurm/cluster.sh status    daemons with their PIDs, nodes, queue
#   bash slurm/cluster.sh env       the line to eval so that sbatch/squeue/submitit use it
#
# Needs root (packages, /etc/hosts, a UTS namespace per node). There is no systemd here:
# daemons run in the foreground under setsid, their PIDs are kept in $STATE/pids/.
# Client commands find the cluster through SLURM_CONF=$STATE/etc/slurm.conf.
#
# Settings (environment): FPAR_SLURM_DIR (state folder, default /tmp/fpar-slurm),
# FPAR_SLURM_PORT (first of 13 TCP ports, default 17000), FPAR_SLURM_CPUS (CPUs declared
# per node, default 2), FPAR_SLURM_PARTITION (default "debug").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${FPAR_SLURM_DIR:-/tmp/fpar-slurm}"
BASE_PORT="${FPAR_SLURM_PORT:-17000}"
CPUS="${FPAR_SLURM_CPUS:-2}"
PARTITION="${FPAR_SLURM_PARTITION:-debug}"
CLUSTER=fpar
NODES=(n1 n2)
CTLD_PORT=$BASE_PORT
NODE_PORTS="$((BASE_PORT + 1))-$((BASE_PORT + 2))"
DB_PORT=$((BASE_PORT + 10))
DBD_PORT=$((BASE_PORT + 12))
CONF="$STATE/etc/slurm.conf"
export SLURM_CONF="$CONF"
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server mariadb-client)
BINARIES=(slurmctld slurmd slurmdbd sbatch sacctmgr munged mariadbd mariadb-install-db mariadb)
# Stop order; start order is the reverse.
DAEMONS=(slurmd-n2 slurmd-n1 slurmctld slurmdbd mariadbd munged)

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] error: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (packages, /etc/hosts, UTS namespaces)"; }

# ----- install ---------------------------------------------------------------------------
cmd_install() {
    local missing=()
    for b in "${BINARIES[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$b" >/dev/null || missing+=("$b")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages already installed"
        return 0
    fi
    need_root
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Keep the package scripts from starting system services: this script runs its own.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } || rc=$?
    [ $created_policy = 1 ] && rm -f "$policy"
    [ $rc = 0 ] || die "apt-get failed (exit $rc)"
}

# ----- helpers ---------------------------------------------------------------------------
pidfile() { echo "$STATE/pids/$1"; }

# True when the PID in the daemon's pid file is a live (not zombie) process.
alive() {
    local f pid st
    f="$(pidfile "$1")"
    [ -s "$f" ] || return 1
    pid="$(cat "$f")"
    [ -r "/proc/$pid/stat" ] || return 1
    st="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)"
    [ "$st" != Z ]
}

# Runs a daemon in the foreground in its own session; its PID goes to the pid file.
launch() {
    local name="$1"; shift
    if alive "$name"; then
        log "$name already running (pid $(cat "$(pidfile "$name")"))"
        return 0
    fi
    setsid "$@" >>"$STATE/log/$name.out" 2>&1 </dev/null &
    echo $! >"$(pidfile "$name")"
    log "$name started (pid $!)"
}

# Waits up to $1 seconds for the command to succeed.
wait_for() {
    local timeout="$1" what="$2"; shift 2
    local t=0
    until "$@" >/dev/null 2>&1; do
        t=$((t + 1))
        [ $t -le $((timeout * 2)) ] || die "$what not ready after ${timeout}s (logs: $STATE/log)"
        sleep 0.5
    done
}

render() {
    sed -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$(hostname -s)|g" -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@NODE_PORTS@|$NODE_PORTS|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@DB_PASS@|$(cat "$STATE/etc/db.pass")|g" \
        -e "s|@MEM_MB@|$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / ${#NODES[@]} / 2))|g" \
        "$1"
}

configure() {
    mkdir -p "$STATE"/{etc,run,pids,log,ctld,mysql} "${NODES[@]/#/$STATE/spool/}"
    [ -s "$STATE/etc/db.pass" ] || (umask 077 && head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/etc/db.pass")
    render "$HERE/slurm.conf.in" >"$CONF"
    (umask 077 && render "$HERE/slurmdbd.conf.in" >"$STATE/etc/slurmdbd.conf")
    chmod 600 "$STATE/etc/slurmdbd.conf"
    # Jobs resolve MASTER_ADDR=n1 through /etc/hosts.
    grep -qE '^127\.0\.0\.1[[:space:]]+n1[[:space:]]+n2([[:space:]]|$)' /etc/hosts \
        || echo "127.0.0.1 ${NODES[*]}" >>/etc/hosts
}

mysql_root() { mariadb --socket="$STATE/mysql.sock" -u root "$@"; }

start_db() {
    if [ ! -d "$STATE/mysql/mysql" ]; then
        log "initialising MariaDB data folder"
        mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
            >>"$STATE/log/mariadb-install.out" 2>&1 || die "mariadb-install-db failed ($STATE/log/mariadb-install.out)"
    fi
    launch mariadbd mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/mysql.sock" \
        --pid-file="$STATE/mysql/mariadbd.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --log-error="$STATE/log/mariadbd.log" --skip-log-bin --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900
    wait_for 30 MariaDB mysql_root -e "SELECT 1"
    local pass; pass="$(cat "$STATE/etc/db.pass")"
    mysql_root -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
        ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
        GRANT ALL ON fpar_slurm_acct.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

nodes_idle() {
    local states
    states="$(sinfo -h -N -o '%N %t' 2>/dev/null)" || return 1
    [ "$(echo "$states" | grep -cE ' (idle|mix|alloc)$')" -ge ${#NODES[@]} ]
}

# ----- start / stop / status -------------------------------------------------------------
cmd_start() {
    need_root
    cmd_install
    configure
    # munged wants its socket folder owned by the munge user.
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key; }
    launch munged setpriv --reuid=munge --regid=munge --clear-groups munged -F
    wait_for 15 munged bash -c 'munge -n | unmunge'
    start_db
    launch slurmdbd slurmdbd -D
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    launch slurmctld slurmctld -D -i
    wait_for 30 slurmctld scontrol ping
    for n in "${NODES[@]}"; do
        # Each node gets its own hostname, as on a real cluster.
        launch "slurmd-$n" unshare --uts sh -c "hostname $n && exec slurmd -D -N $n"
    done
    local t=0
    until nodes_idle; do
        t=$((t + 1))
        if [ $t = 20 ]; then  # a node left DOWN by an earlier stop comes back here
            scontrol update nodename="n[1-${#NODES[@]}]" state=resume >/dev/null 2>&1 || true
        fi
        [ $t -le 80 ] || die "nodes not idle after 40s: $(sinfo -N 2>&1) (logs: $STATE/log)"
        sleep 0.5
    done
    log "cluster up: nodes ${NODES[*]}, partition $PARTITION; use it with: export SLURM_CONF=$CONF"
}

stop_daemon() {
    local name="$1" f pid t=0
    f="$(pidfile "$name")"
    if ! alive "$name"; then
        rm -f "$f"
        return 0
    fi
    pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$name"; do
        t=$((t + 1))
        if [ $t = 40 ]; then
            log "$name (pid $pid) ignores SIGTERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        [ $t -le 60 ] || die "$name (pid $pid) did not stop"
        sleep 0.25
    done
    rm -f "$f"
    log "$name stopped (pid $pid)"
}

cmd_stop() {
    if alive slurmctld; then
        # Jobs first, so that no job step outlives its node daemon.
        local jobs
        jobs="$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
        # shellcheck disable=SC2086
        [ -z "${jobs// /}" ] || scancel --quiet $jobs >/dev/null 2>&1 || true
        local t=0
        while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ $t -lt 60 ]; do
            t=$((t + 1)); sleep 0.5
        done
    fi
    for d in "${DAEMONS[@]}"; do stop_daemon "$d"; done
}

cmd_status() {
    local rc=0
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then echo "$d running (pid $(cat "$(pidfile "$d")"))"; else echo "$d stopped"; rc=3; fi
    done
    if alive slurmctld; then sinfo -N; squeue; fi
    return $rc
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 {install|start|stop|status|env}" >&2; exit 2 ;;
esac
