#!/usr/bin/env bash
# A real single-node SLURM cluster for tests: munge + MariaDB + slurmdbd + slurmctld +
# slurmd, all started directly (no systemd), all config/state/logs under ROOT.
#
#   tests/slurm/cluster.sh start  [ROOT]   install if missing, start what is not running
#   tests/slurm/cluster.sh stop   [ROOT]   stop the daemons (ROOT is kept for inspection)
#   tests/slurm/cluster.sh status [ROOT]   one line per daemon; exit 0 only if all run
#   tests/slurm/cluster.sh env    [ROOT]   export lines to eval: eval "$(cluster.sh env)"
#
# Partitions: cpu (default) and gpu; two fake GPUs (gres/gpu, type testgpu, char devices
# c 1 3) on a node with feature testgpu_node.
# Exit codes: 0 ok, 2 usage, 3 cannot start (reason on stderr), 1 status: not running.
set -euo pipefail

ACTION="${1:-}"
ROOT="${2:-${RCMG_SLURM_ROOT:-/tmp/rcmg-slurm}}"
CLUSTER_NAME="rcmg"
ACCOUNT_NAME="rcmg"
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306
DB_USER="slurm"
DB_PASS="rcmg-test-only"
# The fake GPUs have a type and the node a feature, so --gpus=TYPE:N, --gres=gpu:TYPE:N
# and -C FEATURE are real requests here.
GPU_TYPE="testgpu"
GPU_FEATURE="testgpu_node"
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

ETC="$ROOT/etc"
RUN="$ROOT/run"
LOG="$ROOT/log"
MUNGE_DIR="$ROOT/munge"
# Client commands (sacctmgr) ignore AuthInfo=socket= in 22.05, so munged uses the default socket.
MUNGE_SOCKET="/run/munge/munge.socket.2"
DB_DIR="$ROOT/mysql"
DB_SOCKET="$DB_DIR/mysqld.sock"
SLURM_CONF_FILE="$ETC/slurm.conf"
NODE_NAME="$(hostname -s)"

log() { echo "[cluster.sh] $*" >&2; }
die() {
  echo "[cluster.sh] cannot start the SLURM test cluster: $*" >&2
  exit 3
}

pid_file() { echo "$RUN/$1.pid"; }

daemon_pid() {
  # Prints the pid of a daemon started by this script, if it is alive.
  local file pid
  file="$(pid_file "$1")"
  [[ -s "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

is_running() {
  if [[ "$1" == munged ]]; then
    munge_answers
  else
    daemon_pid "$1" >/dev/null
  fi
}

wait_for() {
  # wait_for SECONDS DESCRIPTION COMMAND... : poll COMMAND every 0.2 s.
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
  log "$what: ready"
}

fail_with_log() {
  # fail_with_log REASON LOGFILE
  [[ -f "$2" ]] && tail -n 20 "$2" >&2
  die "$1 (see $2)"
}

check_prerequisites() {
  [[ "$(id -u)" == 0 ]] || die "must run as root (daemons run as root; apt installs packages)"
  local missing=()
  for bin in slurmctld slurmd slurmdbd sbatch sacctmgr munged mariadbd mariadb-install-db; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
  local started=$SECONDS
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=900 \
    --no-install-recommends "${PACKAGES[@]}" >"/tmp/rcmg-slurm-apt.log" 2>&1; then
    log "apt-get install failed; trying apt-get update first"
    DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=900 \
      >>"/tmp/rcmg-slurm-apt.log" 2>&1 || die "apt-get update failed (see /tmp/rcmg-slurm-apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=900 \
      --no-install-recommends "${PACKAGES[@]}" >>"/tmp/rcmg-slurm-apt.log" 2>&1 ||
      die "apt-get install failed (see /tmp/rcmg-slurm-apt.log)"
  fi
  log "installed in $((SECONDS - started)) s"
}

real_memory_mb() {
  # 90 % of MemTotal, so slurmd never reports less than configured.
  awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo
}

make_fake_gpus() {
  mkdir -p "$ROOT/dev"
  local i
  for i in 0 1; do
    local dev="$ROOT/dev/fakegpu$i"
    [[ -c "$dev" ]] && continue
    rm -f "$dev"
    # Same major/minor as /dev/null; a symlink to /dev/null if mknod is not allowed.
    mknod -m 666 "$dev" c 1 3 2>/dev/null || ln -s /dev/null "$dev"
  done
}

write_slurm_conf() {
  cat >"$SLURM_CONF_FILE" <<EOF
# Written by tests/slurm/cluster.sh: single-node test cluster, everything under $ROOT
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE_NAME(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
StateSaveLocation=$ROOT/spool/ctld
SlurmdSpoolDir=$ROOT/spool/d
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=0,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
ReturnToService=2
MinJobAge=300
DefMemPerCPU=1000
KillWait=2
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$NODE_NAME NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(real_memory_mb) Gres=gpu:$GPU_TYPE:2 Feature=$GPU_FEATURE State=UNKNOWN
PartitionName=cpu Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE_NAME Default=NO MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE_NAME Name=gpu Type=$GPU_TYPE File=$ROOT/dev/fakegpu[0-1]
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$(pid_file slurmdbd)
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf"
}

link_default_conf() {
  # The jobstep plugin strips SLURM_* (incl. SLURM_CONF) before its inner `srun`, so
  # client commands inside jobs need the default path to find this cluster.
  local target=/etc/slurm/slurm.conf
  mkdir -p /etc/slurm
  if [[ -L "$target" || ! -e "$target" ]]; then
    ln -sfn "$SLURM_CONF_FILE" "$target"
  else
    log "WARNING: $target is a real file; srun inside jobs will not find this cluster"
  fi
}

munge_answers() { munge --socket="$MUNGE_SOCKET" -n >/dev/null 2>&1; }

start_munge() {
  is_running munged && return 0
  if munge_answers; then
    log "munged: a munged not started by this script already answers on $MUNGE_SOCKET; using it"
    return 0
  fi
  mkdir -p "$MUNGE_DIR" "$(dirname "$MUNGE_SOCKET")"
  chmod 700 "$MUNGE_DIR"
  if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
    dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
  fi
  chmod 400 "$MUNGE_DIR/munge.key"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$(pid_file munged)" --log-file="$LOG/munged.log" \
    --seed-file="$MUNGE_DIR/munge.seed" ||
    fail_with_log "munged did not start" "$LOG/munged.log"
  wait_for 10 munged munge --socket="$MUNGE_SOCKET" -n ||
    fail_with_log "munged does not answer on $MUNGE_SOCKET" "$LOG/munged.log"
}

db_client() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_mariadb() {
  is_running mariadbd && return 0
  if [[ ! -d "$DB_DIR/data/mysql" ]]; then
    mkdir -p "$DB_DIR"
    rm -rf "$DB_DIR/data"
    mariadb-install-db --no-defaults --datadir="$DB_DIR/data" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 ||
      fail_with_log "mariadb-install-db failed" "$LOG/mariadb-install.log"
  fi
  setsid mariadbd --no-defaults --user=root --datadir="$DB_DIR/data" --socket="$DB_SOCKET" \
    --pid-file="$(pid_file mariadbd)" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=128M \
    --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping ||
    fail_with_log "mariadbd did not come up" "$LOG/mariadb.log"
  db_client -e "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1'; FLUSH PRIVILEGES;" ||
    die "could not create the slurmdbd database user"
}

sacctmgr_quiet() { sacctmgr -i "$@" >/dev/null 2>&1; }

start_slurmdbd() {
  is_running slurmdbd && return 0
  slurmdbd >>"$LOG/slurmdbd.stderr" 2>&1 || fail_with_log "slurmdbd did not start" "$LOG/slurmdbd.log"
  wait_for 60 slurmdbd sacctmgr -n list cluster ||
    fail_with_log "slurmdbd does not answer on port $DBD_PORT" "$LOG/slurmdbd.log"
}

ensure_accounting() {
  # Idempotent: each entity is added only when `sacctmgr list` does not show it.
  if [[ -z "$(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster 2>/dev/null)" ]]; then
    sacctmgr_quiet add cluster "$CLUSTER_NAME" || die "sacctmgr add cluster $CLUSTER_NAME failed"
  fi
  if [[ -z "$(sacctmgr -n -P list account "$ACCOUNT_NAME" format=account 2>/dev/null)" ]]; then
    sacctmgr_quiet add account "$ACCOUNT_NAME" cluster="$CLUSTER_NAME" \
      description=tests organization=rcmg || die "sacctmgr add account $ACCOUNT_NAME failed"
  fi
  if [[ -z "$(sacctmgr -n -P list assoc user=root account="$ACCOUNT_NAME" format=user 2>/dev/null)" ]]; then
    sacctmgr_quiet add user root account="$ACCOUNT_NAME" cluster="$CLUSTER_NAME" ||
      die "sacctmgr add user root failed"
  fi
}

start_slurmctld() {
  is_running slurmctld && return 0
  mkdir -p "$ROOT/spool/ctld"
  slurmctld >>"$LOG/slurmctld.stderr" 2>&1 || fail_with_log "slurmctld did not start" "$LOG/slurmctld.log"
  wait_for 30 slurmctld scontrol ping || fail_with_log "slurmctld does not answer" "$LOG/slurmctld.log"
}

node_is_usable() {
  local state
  state="$(sinfo -h -n "$NODE_NAME" -o %T 2>/dev/null | head -n 1)"
  [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]]
}

start_slurmd() {
  if ! is_running slurmd; then
    mkdir -p "$ROOT/spool/d"
    slurmd -N "$NODE_NAME" >>"$LOG/slurmd.stderr" 2>&1 || fail_with_log "slurmd did not start" "$LOG/slurmd.log"
  fi
  if ! wait_for 30 "node $NODE_NAME" node_is_usable; then
    scontrol update nodename="$NODE_NAME" state=resume >/dev/null 2>&1 || true
    wait_for 15 "node $NODE_NAME (after resume)" node_is_usable ||
      fail_with_log "node $NODE_NAME is not idle: $(sinfo -h -N -o '%T %E')" "$LOG/slurmd.log"
  fi
}

all_running() {
  local daemon
  for daemon in "${DAEMONS[@]}"; do
    is_running "$daemon" || return 1
  done
}

cmd_start() {
  check_prerequisites
  export SLURM_CONF="$SLURM_CONF_FILE"
  if all_running && node_is_usable; then
    log "already running (ROOT=$ROOT)"
    return 0
  fi
  local started=$SECONDS
  mkdir -p "$ETC" "$RUN" "$LOG"
  make_fake_gpus
  write_slurm_conf
  link_default_conf
  start_munge
  start_mariadb
  start_slurmdbd
  ensure_accounting
  start_slurmctld
  start_slurmd
  log "cluster $CLUSTER_NAME up in $((SECONDS - started)) s (ROOT=$ROOT; eval \"\$($0 env $ROOT)\")"
}

stop_daemon() {
  local name="$1" pid
  pid="$(daemon_pid "$name")" || return 0
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name ($pid) ignores SIGTERM; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$(pid_file "$name")"
  log "$name stopped"
}

cmd_stop() {
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop_daemon "${DAEMONS[$i]}"
  done
}

cmd_status() {
  local daemon rc=0
  for daemon in "${DAEMONS[@]}"; do
    if pid="$(daemon_pid "$daemon")"; then
      echo "$daemon running (pid $pid)"
    else
      echo "$daemon stopped"
      rc=1
    fi
  done
  return "$rc"
}

case "$ACTION" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$SLURM_CONF_FILE" ;;
*)
  echo "usage: $0 {start|stop|status|env} [ROOT]   (default ROOT=/tmp/rcmg-slurm)" >&2
  exit 2
  ;;
esac
