#!/usr/bin/env bash
# CPU of the ecom-stream process per message through Google's Pub/Sub emulator (design §8),
# in three modes, each measured RUNS times on the same emulator (and node):
#   ceiling    `run --ack-only`: the same subscriber and streams, acking on arrival: the
#              Pub/Sub client's own cost, which every mode pays;
#   embedded   `run` into the embedded SQLite store;
#   cassandra  `run --store cassandra` (a fresh keyspace per run) against a node this script
#              starts with scripts/cassandra-node (or ECOM_CASSANDRA_NODES, if set).
#
# Each measurement publishes MESSAGES orders and MESSAGES payments (ids 1..=MESSAGES, every
# payment joins) before `run --until-idle 3s` starts, checks that all 2×MESSAGES were
# delivered (and, when written, upserted and joined), and takes the process's user + system
# CPU from the kernel when it exits (getrusage of the child: load/lib.sh `measure_run`). That
# is its whole life: start-up, the drain of the backlog and the 3 s idle tail (a few ms of
# lease upkeep), divided by the messages delivered. Prints µs of CPU per message per run, then
# per mode the median of the runs and its ratio to the ceiling's median.
#
# usage: load/cpu_per_message.sh [MESSAGES=50000] [RUNS=3] [STREAMS=8] [MODES="ceiling embedded cassandra"]
#   Leave `cassandra` out of MODES where Java 17 / Maven (for the node) are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh

MESSAGES=${1:-50000}
RUNS=${2:-3}
STREAMS=${3:-8}
MODES=${4:-ceiling embedded cassandra}

load_bin
load_init
start_emulator
node=none
if [[ " $MODES " == *" cassandra "* ]]; then
  node="given by ECOM_CASSANDRA_NODES"
  if [[ -z "${ECOM_CASSANDRA_NODES:-}" ]]; then
    start_cassandra "${ECOM_LOAD_CASSANDRA_HEAP:-1G}"
    node="Apache Cassandra $CASS_VERSION, pid $CASS_PID, started by this script"
  fi
  node="$ECOM_CASSANDRA_NODES ($node)"
fi
export ECOM_METRICS_ADDR=127.0.0.1:0
echo "# $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "# emulator $PUBSUB_EMULATOR_HOST; Cassandra: $node"
echo "# $MESSAGES orders + $MESSAGES payments per run; $STREAMS streams per subscription; $RUNS runs per mode"

if [[ " $MODES " == *" cassandra "* ]]; then
  # Unmeasured: a cold node's JIT makes the first requests several times dearer.
  warm=$((MESSAGES < 20000 ? MESSAGES : 20000))
  out=$(measure_run "$warm" cassandra "$STREAMS" warmup)
  echo "# warm-up (not counted): run --store cassandra, $warm + $warm messages (${out%% *} msg/s)"
fi

printf '%-4s %-10s %10s %14s\n' run mode msg/s "µs CPU/msg"
for mode in $MODES; do : >"$WORK/$mode.us"; done
for run in $(seq 1 "$RUNS"); do
  for mode in $MODES; do
    out=$(measure_run "$MESSAGES" "$mode" "$STREAMS" "r$run")
    read -r rate cpu _ <<<"$out"
    # CPU seconds per 1,000 messages = ms per 1,000 = µs per message × 1,000 / 1,000.
    us=$(awk "BEGIN { printf \"%.2f\", $cpu * 1000 }")
    echo "$us" >>"$WORK/$mode.us"
    printf '%-4s %-10s %10s %14s\n' "$run" "$mode" "$rate" "$us"
  done
done
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"

echo "medians of $RUNS runs, µs of ecom-stream CPU per message:"
base=
[[ " $MODES " == *" ceiling "* ]] && base=$(median <"$WORK/ceiling.us")
for mode in $MODES; do
  m=$(median <"$WORK/$mode.us")
  if [ -n "$base" ]; then
    printf '  %-10s %8.2f µs   %.2f× the ceiling\n' "$mode" "$m" "$(awk "BEGIN { print $m / $base }")"
  else
    printf '  %-10s %8.2f µs\n' "$mode" "$m"
  fi
done
