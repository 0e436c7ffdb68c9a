#!/usr/bin/env bash
# A throwaway one-node SLURM cluster (with accounting) and a PostgreSQL server on this machine, for the
# cluster tests (tests/cluster/) and for trying hydra/launcher=submitit_slurm by hand. Root on Debian/Ubuntu.
#
#   tests/cluster/cluster.sh start [DIR]   installs what is missing (apt-get), writes every config into DIR
#                                          (default: a new /tmp/rnnlab-cluster.XXXX), starts munged, MariaDB,
#                                          slurmdbd, slurmctld, slurmd and PostgreSQL, waits until sinfo shows
#                                          the node idle, prints the environment (`export NAME=value` lines,
#                                          also in DIR/env) and exits; the daemons keep running
#   tests/cluster/cluster.sh stop DIR      stops every daemon that `start` started (by the pids in DIR/pids),
#                                          then removes DIR
#   tests/cluster/cluster.sh run CMD...    start, run CMD with the environment, stop (also on Ctrl-C)
#
# When the cluster cannot start (not root, no apt-get, a package that does not install, a daemon that does not
# come up) `start` prints one line `cluster: cannot start: <reason>` on stderr, stops what it started and exits
# 3: the tests skip with that reason. Nothing outside DIR is written, apart from the packages installed.
set -uo pipefail

CANNOT=3
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
COMMANDS=(slurmctld slurmd slurmdbd munged sinfo sbatch sacct sacctmgr mariadbd mariadb-install-db)
CLUSTER_NAME=rnnlab
DB_USER=slurm
DB_PASS=rnnlab-throwaway

say() { echo "[cluster] $*" >&2; }

cannot() {
    echo "cluster: cannot start: $*" >&2
    [[ -n "${DIR:-}" && -d "${DIR:-}/pids" ]] && stop_daemons "$DIR"
    exit "$CANNOT"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

postgres_bin() {
    local found
    found=$(command -v pg_ctl) && { dirname "$(readlink -f "$found")"; return; }
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$found" ]] && echo "$found"
}

install_missing() {
    local missing=()
    for command in "${COMMANDS[@]}"; do
        command -v "$command" >/dev/null || PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null \
            || missing+=("$command")
    done
    [[ ${#missing[@]} -eq 0 && -n "$(postgres_bin)" ]] && return 0
    command -v apt-get >/dev/null || cannot "missing ${missing[*]:-PostgreSQL} and no apt-get to install it"
    local packages=("${PACKAGES[@]}")
    [[ -z "$(postgres_bin)" ]] && packages+=(postgresql)
    local started=$SECONDS
    say "installing ${packages[*]} (missing: ${missing[*]:-PostgreSQL})"
    # Debian's postinst scripts must not start the system's own daemons: ours run from DIR.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.rnnlab && chmod +x /usr/sbin/policy-rc.d.rnnlab
    local own_policy=0
    [[ -e /usr/sbin/policy-rc.d ]] || { mv /usr/sbin/policy-rc.d.rnnlab /usr/sbin/policy-rc.d; own_policy=1; }
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${packages[@]}"; } >"$DIR/apt.log" 2>&1
    local rc=$?
    [[ $own_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.rnnlab
    [[ $rc -eq 0 ]] || cannot "apt-get install ${packages[*]} failed (exit $rc): $(tail -n 1 "$DIR/apt.log")"
    say "installed in $((SECONDS - started)) s"
    echo "$((SECONDS - started))" >"$DIR/install_s"
}

# Start a daemon in the foreground of its own session, its output in DIR/log/NAME.log, its pid in DIR/pids.
spawn() {
    local name=$1
    shift
    setsid "$@" >"$DIR/log/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name.pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    say "$what up after $((SECONDS - START)) s"
}

daemon_alive() { kill -0 "$(cat "$DIR/pids/$1.pid")" 2>/dev/null; }

check_alive() {  # a daemon that died at once: its log's last line is the reason
    daemon_alive "$1" || cannot "$1 exited: $(tail -n 1 "$DIR/log/$1.log")"
}

write_configs() {
    local host node_line
    host=$(hostname -s)
    node_line=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..: the real machine
    [[ "$node_line" == NodeName=* ]] || cannot "slurmd -C printed no node line: $node_line"
    local cpus memory
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.file.log
SlurmdLogFile=$DIR/log/slurmd.file.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that asks no memory gets its CPUs' share (not the whole node, which would run one job at a time).
DefMemPerCPU=$((memory / cpus))
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MinJobAge=300
KillWait=10
InactiveLimit=0
# One compute node: this machine as slurmd -C sees it, with one declared GPU (no device behind it) so that
# GPU requests (hydra/launcher=slurm_gpu) are accepted.
$node_line Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    sed -i 's/ UpTime=[^ ]*//' "$DIR/etc/slurm.conf"
    echo "NodeName=$host Name=gpu File=/dev/null" >"$DIR/etc/gres.conf"
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.file.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

start_munge() {
    mungekey --create --keyfile="$DIR/munge/munge.key" --force >/dev/null 2>&1 \
        || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 700 "$DIR/munge" && chmod 400 "$DIR/munge/munge.key"
    spawn munged munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munge.seed" --log-file="$DIR/log/munged.file.log"
    wait_for 20 munged test -S "$DIR/munge/munge.socket" || { check_alive munged; cannot "munged: no socket"; }
}

start_mariadb() {
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=normal \
        --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || cannot "mariadb-install-db failed: $(tail -n 1 "$DIR/log/mariadb-install.log")"
    spawn mariadb mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadb.pid" --innodb-buffer-pool-size=64M
    wait_for 60 MariaDB mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot -e 'select 1' \
        || { check_alive mariadb; cannot "MariaDB did not answer in 60 s"; }
    mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot -e \
        "CREATE USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS'; GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';" \
        || cannot "MariaDB: could not create the slurm user"
}

start_slurm() {
    spawn slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster || { check_alive slurmdbd; cannot "slurmdbd did not answer in 60 s"; }
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null 2>&1 || true  # already there when slurmctld added it
    spawn slurmctld slurmctld -D -i
    wait_for 30 slurmctld scontrol ping || { check_alive slurmctld; cannot "slurmctld did not answer in 30 s"; }
    spawn slurmd slurmd -D -N "$(hostname -s)"
    node_idle() { [[ "$(sinfo -h -N -o '%T' | head -n 1)" == idle ]]; }
    wait_for 60 "node idle (sinfo)" node_idle || { check_alive slurmd; cannot "the node is not idle after 60 s: $(sinfo -h -N -o '%T %E')"; }
}

start_postgres() {
    local bin
    bin=$(postgres_bin) || cannot "no PostgreSQL server binaries (pg_ctl)"
    mkdir -p "$DIR/pg" && chown postgres "$DIR/pg" 2>/dev/null || cannot "no postgres user for PostgreSQL (initdb refuses root)"
    chmod 755 "$DIR"
    runuser -u postgres -- "$bin/initdb" -D "$DIR/pg/data" -A trust -U postgres --no-sync >"$DIR/log/initdb.log" 2>&1 \
        || cannot "initdb failed: $(tail -n 1 "$DIR/log/initdb.log")"
    spawn postgres runuser -u postgres -- "$bin/postgres" -D "$DIR/pg/data" -k "$DIR/pg" -p "$PG_PORT" \
        -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200
    wait_for 30 PostgreSQL "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" || { check_alive postgres; cannot "PostgreSQL did not answer in 30 s"; }
}

start() {
    [[ $(id -u) -eq 0 ]] || cannot "not root (the daemons and apt-get need root)"
    [[ "$(uname -s)" == Linux ]] || cannot "not Linux"
    DIR=${1:-$(mktemp -d /tmp/rnnlab-cluster.XXXX)}
    DIR=$(readlink -f "$DIR")
    mkdir -p "$DIR"/{etc,log,pids,run,state,spool,munge} || cannot "cannot create $DIR"
    START=$SECONDS
    install_missing
    export PATH="$PATH:/usr/sbin:/sbin"
    START=$SECONDS
    CTLD_PORT=$(free_port) SLURMD_PORT=$(free_port) DBD_PORT=$(free_port) DB_PORT=$(free_port) PG_PORT=$(free_port)
    export SLURM_CONF="$DIR/etc/slurm.conf"
    write_configs
    start_munge
    start_mariadb
    start_slurm
    start_postgres
    echo "$((SECONDS - START))" >"$DIR/start_s"
    {
        printf 'export %s=%q\n' RNNLAB_CLUSTER_DIR "$DIR" SLURM_CONF "$SLURM_CONF" PATH "$PATH"
        printf 'export %s=%q\n' RNNLAB_CLUSTER_PG_URL "postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/postgres"
    } >"$DIR/env"
    say "cluster up in $((SECONDS - START)) s (install: $(cat "$DIR/install_s" 2>/dev/null || echo 0) s); stop it with: $0 stop $DIR"
    cat "$DIR/env"
}

stop_daemons() {  # SLURM's daemons first, then what they use; SIGTERM to each group, SIGKILL after 20 s
    local dir=$1
    stop_group "$dir" slurmd slurmctld slurmdbd
    stop_group "$dir" postgres mariadb munged
}

stop_group() {
    local dir=$1 pids=() name pid
    shift
    for name in "$@"; do
        [[ -f "$dir/pids/$name.pid" ]] || continue
        pid=$(cat "$dir/pids/$name.pid")
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$dir/pids/$name.pid"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
}

stop() {
    local dir=${1:?usage: cluster.sh stop DIR}
    [[ -f "$dir/etc/slurm.conf" ]] || { echo "cluster: $dir is not a cluster directory" >&2; exit 1; }
    # Jobs still running would outlive slurmd (slurmstepd): cancel them first.
    SLURM_CONF="$dir/etc/slurm.conf" PATH="$PATH:/usr/sbin" scancel --full --quiet "--user=$(id -un)" 2>/dev/null
    stop_daemons "$dir"
    case "$dir" in /tmp/rnnlab-cluster.*) rm -rf "$dir" ;; esac
}

case "${1:-}" in
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
run)
    shift
    start >/dev/null || exit $?
    trap 'stop "$DIR"' EXIT INT TERM
    # shellcheck disable=SC1091
    source "$DIR/env"
    "$@"
    ;;
*) echo "usage: $0 start [DIR] | stop DIR | run CMD..." >&2; exit 2 ;;
esac
