# Shared by the load scripts (sourced, not run): a work dir and one EXIT trap that undoes
# everything a script started, free loopback ports, Google's Pub/Sub emulator, a throwaway
# Apache Cassandra node (scripts/cassandra-node), one measured `ecom-stream run` through the
# emulator, the CPU time of a child process, medians.
#
# The caller runs `set -euo pipefail` from the repository's root, then `load_init` before
# anything else. Every start_* helper registers its own stop with `load_on_exit`; stops run
# in reverse order on any exit (an error, Ctrl-C, SIGTERM, or the end of the script).
# shellcheck shell=bash

LOAD_CLEANUPS=()

load_on_exit() { LOAD_CLEANUPS+=("$1"); }

load_cleanup() {
  local i
  for ((i = ${#LOAD_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${LOAD_CLEANUPS[$i]}" || true
  done
  LOAD_CLEANUPS=()
}

# Makes WORK (a temp dir, removed at exit) and installs the trap.
load_init() {
  WORK=$(mktemp -d)
  trap load_cleanup EXIT
  # A signal ends the script through `exit`, so the EXIT trap runs.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  load_on_exit 'rm -rf "$WORK"'
}

# A loopback port nobody listens on now (with --pair, one whose successor is free too:
# Cassandra's ssl_storage_port is storage_port + 1).
# Sets BIN to the ecom-stream to measure: ECOM_LOAD_BIN if set (e.g. a copy of a build
# before a change), else a fresh release build.
load_bin() {
  if [ -n "${ECOM_LOAD_BIN:-}" ]; then
    BIN=$ECOM_LOAD_BIN
  else
    cargo build --release --quiet --bin ecom-stream
    BIN=$PWD/target/release/ecom-stream
  fi
}

free_port() {
  python3 - "${1:-}" <<'PY'
import socket, sys
pair = sys.argv[1] == "--pair"
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    if not pair:
        break
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port + 1)); t.close(); break
    except OSError:
        s.close()
print(port)
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Starts the emulator on a free port; exports PUBSUB_EMULATOR_HOST, sets EMU_PID.
start_emulator() {
  local emulator=${ECOM_TEST_PUBSUB_EMULATOR:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}
  [ -x "$emulator" ] || { echo "no Pub/Sub emulator at $emulator" >&2; exit 1; }
  command -v java >/dev/null || { echo "the Pub/Sub emulator needs java" >&2; exit 1; }
  local port
  port=$(free_port)
  "$emulator" --host=127.0.0.1 --port="$port" >"$WORK/emulator.log" 2>&1 &
  EMU_PID=$!
  load_on_exit 'kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null || true'
  for _ in $(seq 1 240); do
    grep -q "Server started" "$WORK/emulator.log" && break
    kill -0 "$EMU_PID" || { cat "$WORK/emulator.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q "Server started" "$WORK/emulator.log" || { echo "the emulator did not start in 120s" >&2; exit 1; }
  export PUBSUB_EMULATOR_HOST=127.0.0.1:$port
}

# Starts a Cassandra node (heap $1, default 1G) in WORK/cassandra on free loopback ports,
# stopped by its PID at exit (and by the script's watchdog if this shell dies unseen);
# exports ECOM_CASSANDRA_NODES, sets CASS_PID and CASS_VERSION.
start_cassandra() {
  local heap=${1:-1G} native storage
  native=$(free_port)
  storage=$(free_port --pair)
  CASS_DIR=$WORK/cassandra
  load_on_exit 'scripts/cassandra-node stop --dir "$CASS_DIR" >/dev/null 2>&1 || true'
  scripts/cassandra-node start --dir "$CASS_DIR" --address 127.0.0.1 --native-port "$native" \
    --storage-port "$storage" --heap "$heap" --owner-pid $$ >&2
  CASS_PID=$(cat "$CASS_DIR/pid")
  CASS_VERSION=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' tests/cassandra/pom.xml)
  export ECOM_CASSANDRA_NODES=127.0.0.1:$native
}

# User + system CPU seconds a running process has spent so far (/proc/PID/stat).
proc_cpu() {
  local hz
  hz=$(getconf CLK_TCK)
  awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"
}

# Every step a script runs is bounded: LOAD_STEP_TIMEOUT seconds (default 900), then
# SIGTERM, then SIGKILL 30 s later.
bounded() { timeout --kill-after=30 "${LOAD_STEP_TIMEOUT:-900}" "$@"; }

# Runs "$@" (bounded as above) and writes its user + system CPU seconds to the file $1:
# the rusage wait4 reports for that child (its own, plus that of any children it reaped;
# ecom-stream starts none). Its peak resident set (ru_maxrss, KiB: the kernel's high-water
# mark, VmHWM, at exit) goes to "$1.rss". The command's stdout and stderr pass through.
cpu_of() {
  local out=$1
  shift
  python3 - "$out" "${LOAD_STEP_TIMEOUT:-900}" "$@" <<'PY'
import os, signal, sys
out, limit, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
stage = []
def overdue(*_):
    stage.append(1)
    os.kill(pid, signal.SIGTERM if len(stage) == 1 else signal.SIGKILL)
    print(f"{cmd[0]}: still running after {limit} s; {'SIGTERM' if len(stage) == 1 else 'SIGKILL'}", file=sys.stderr)
    signal.alarm(30)
signal.signal(signal.SIGALRM, overdue)
signal.alarm(limit)
_, status, ru = os.wait4(pid, 0)
signal.alarm(0)
with open(out, "w") as f:
    f.write(f"{ru.ru_utime + ru.ru_stime:.3f}\n")
with open(out + ".rss", "w") as f:
    f.write(f"{ru.ru_maxrss}\n")
sys.exit(1 if stage else os.waitstatus_to_exitcode(status) & 0xFF)
PY
}

# One measured `run` through the emulator (needs BIN, WORK, PUBSUB_EMULATOR_HOST):
#   measure_run MESSAGES MODE STREAMS TAG
# MODE: ceiling (`run --ack-only`), embedded (`run`, the embedded store) or cassandra
# (`run --store cassandra`, a fresh keyspace on ECOM_CASSANDRA_NODES). Makes a fresh
# project, publishes MESSAGES orders and MESSAGES payments (ids 1..=MESSAGES, so every
# payment joins) before `run --until-idle 3s` starts, checks that everything was delivered
# (and, when written, upserted and joined), and prints five figures:
#   MSG_PER_S        deliveries per second between the first delivery and the last answer;
#   CPU_PER_1000     CPU seconds (user + system) of the ecom-stream process over its whole
#                    life, per 1,000 deliveries;
#   NODE_PER_1000    in cassandra mode with a node of our own (CASS_PID), the node's CPU
#                    seconds per 1,000 deliveries while `run` ran (else 0);
#   EMU_PER_1000     the emulator's CPU seconds per 1,000 deliveries while `run` ran;
#   CACHE_MISSES     payments held because their order was in neither the join cache nor
#                    the store on arrival (each came after a point read of the store).
measure_run() {
  local n=$1 mode=$2 streams=$3 tag=$4
  local project="load-$mode-$streams-$tag-$$"
  local dir="$WORK/$project"
  local store=(--store embedded)
  local extra=()
  case "$mode" in
    ceiling) extra=(--ack-only) ;;
    embedded) ;;
    cassandra) store=(--store cassandra --cassandra-keyspace "ecom_${tag//[^a-zA-Z0-9]/_}_$$") ;;
    *) echo "measure_run: unknown mode $mode" >&2; exit 1 ;;
  esac
  export ECOM_PROJECT=$project
  bounded "$BIN" "${store[@]}" --data-dir "$dir" setup >"$WORK/setup.out" 2>&1 \
    || { cat "$WORK/setup.out" >&2; exit 1; }
  bounded "$BIN" produce orders --ids "1..=$n" --json >/dev/null 2>&1
  bounded "$BIN" produce payments --ids "1..=$n" --json >/dev/null 2>&1
  local node_before=0 node_after=0 emu_before emu_after
  [ "$mode" = cassandra ] && [ -n "${CASS_PID:-}" ] && node_before=$(proc_cpu "$CASS_PID")
  emu_before=$(proc_cpu "$EMU_PID")
  cpu_of "$WORK/run.cpu" "$BIN" "${store[@]}" --data-dir "$dir" run --json --until-idle 3s \
    --hold 30s --pubsub-streams "$streams" "${extra[@]}" 2>"$WORK/run.err" >"$WORK/run.json" \
    || { cat "$WORK/run.err" >&2; exit 1; }
  emu_after=$(proc_cpu "$EMU_PID")
  [ "$mode" = cassandra ] && [ -n "${CASS_PID:-}" ] && node_after=$(proc_cpu "$CASS_PID")
  python3 - "$WORK/run.json" "$n" "$mode" "$(cat "$WORK/run.cpu")" "$node_before" "$node_after" \
    "$emu_before" "$emu_after" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, mode, cpu = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
node = float(sys.argv[6]) - float(sys.argv[5])
emu = float(sys.argv[8]) - float(sys.argv[7])
delivered = r["orders"]["delivered"] + r["payments"]["delivered"]
if delivered < 2 * n:
    sys.exit(f"only {delivered} of {2 * n} delivered")
if mode != "ceiling":
    s = r["stats"]
    if s["orders_upserted"] < n:
        sys.exit(f"only {s['orders_upserted']} orders upserted")
    joined = s["payments_joined"] + s["payments_joined_after_hold"]
    if joined < n:
        sys.exit(f"only {joined} payments joined")
misses = r["stats"]["cache_misses"] if mode != "ceiling" else 0
k = 1000 / delivered
print(f"{r['per_second']:.0f} {cpu * k:.4f} {node * k:.4f} {emu * k:.4f} {misses}")
EOF
  rm -rf "$dir"
}
