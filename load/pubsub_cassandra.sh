#!/usr/bin/env bash
# End to end through Google's Pub/Sub emulator into Apache Cassandra (design §8), next to
# two baselines measured in the same run of this script, and the CPU the ecom-stream
# process itself spends per 1,000 messages.
#
# Each round measures, one after another, on the same emulator and the same node:
#   ceiling    `run --ack-only`: the same subscriber and streams, acking on arrival;
#   embedded   `run` into the embedded SQLite store;
#   cassandra  `run --store cassandra` (a fresh keyspace per run);
#   raw        the raw driver (examples/cassandra_load.rs --raw-only): 2×MESSAGES order
#              upserts, the same prepared statement and bound on requests in flight as the
#              store, i.e. as many row writes as the pipeline makes.
# Each `run` measurement publishes MESSAGES orders and MESSAGES payments (ids
# 1..=MESSAGES, so every payment joins) before `run --until-idle 3s` starts; its rate is
# deliveries per second between its first delivery and its last answer. "cache misses" are
# the payments held because their order was in neither the join cache nor the store on
# arrival, each after a point read of the store (the backlog is pulled from both
# subscriptions at once, so many payments come before their order). Before round 1,
# 200,000 raw rows and a smaller cassandra run warm the node up, unmeasured.
#
# CPU, in seconds (user + system) per 1,000 messages: for each `run`, of the ecom-stream
# process over its whole life (getrusage of the child; start-up and the 3 s idle tail
# included): the cost that carries over to a deployment where Pub/Sub and Cassandra run on
# other machines. Next to it, while the cassandra runs ran, the emulator's and (when this
# script started it) the node's, from /proc/PID/stat; for raw, the driver program's own
# CPU per 1,000 rows.
#
# usage: load/pubsub_cassandra.sh [MESSAGES=50000] [RUNS=3] [STREAMS=8]
# With ECOM_CASSANDRA_NODES set it uses that node or cluster; otherwise it starts its own
# (scripts/cassandra-node: Java 17 and Maven; heap ECOM_LOAD_CASSANDRA_HEAP, default 1G)
# and stops it at exit. Prints one line per measurement, then medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh

HEAP=${ECOM_LOAD_CASSANDRA_HEAP:-1G}
MESSAGES=${1:-50000}
RUNS=${2:-3}
STREAMS=${3:-8}

cargo build --release --quiet --bin ecom-stream --example cassandra_load
BIN=$PWD/target/release/ecom-stream
RAW=$PWD/target/release/examples/cassandra_load
load_init
start_emulator
node="given by ECOM_CASSANDRA_NODES"
if [[ -z "${ECOM_CASSANDRA_NODES:-}" ]]; then
  start_cassandra "$HEAP"
  node="Apache Cassandra $CASS_VERSION, pid $CASS_PID, heap $HEAP, started by this script"
fi
export ECOM_METRICS_ADDR=127.0.0.1:0
echo "# $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "# emulator pid $EMU_PID on $PUBSUB_EMULATOR_HOST; Cassandra $ECOM_CASSANDRA_NODES ($node)"
echo "# $MESSAGES orders + $MESSAGES payments per run measurement; $STREAMS streams per subscription; $RUNS rounds"

# Unmeasured: the raw driver writes 200,000 rows, then one smaller cassandra run (reads,
# the emulator, the page cache), so that no measured run meets a cold node: its JIT keeps
# speeding up over the first few hundred thousand requests.
bounded "$RAW" --rows 1 --rounds 1 --warmup 200000 --raw-only >/dev/null
warm=$((MESSAGES < 20000 ? MESSAGES : 20000))
out=$(measure_run "$warm" cassandra "$STREAMS" warmup)
echo "# warm-up (not counted): 200,000 raw rows, then run --store cassandra with $warm + $warm messages (${out%% *} msg/s)"

# One row per measurement. CPU columns: seconds per 1,000 messages (rows for raw) of
# ecom-stream (the driver program for raw), the Cassandra node and the emulator.
row() { printf '%-5s %-10s %7s %-6s %10s %10s %10s %12s\n' "$@"; }
row round mode rate "" "CPU" "node CPU" "emu CPU" "cache misses"
for mode in ceiling embedded cassandra raw; do : >"$WORK/$mode.rate" && : >"$WORK/$mode.cpu"; done
: >"$WORK/node.cpu" && : >"$WORK/emu.cpu"
for round in $(seq 1 "$RUNS"); do
  for mode in ceiling embedded cassandra; do
    out=$(measure_run "$MESSAGES" "$mode" "$STREAMS" "r$round")
    read -r rate cpu node emu misses <<<"$out"
    echo "$rate" >>"$WORK/$mode.rate"
    echo "$cpu" >>"$WORK/$mode.cpu"
    if [ "$mode" = cassandra ]; then
      echo "$emu" >>"$WORK/emu.cpu"
      if [ -n "${CASS_PID:-}" ]; then echo "$node" >>"$WORK/node.cpu"; else node=-; fi
    else
      node=-
    fi
    [ "$mode" = ceiling ] && misses=-
    row "$round" "$mode" "$rate" msg/s "$cpu" "$node" "$emu" "$misses"
  done
  # The node has just taken the cassandra run's writes: no warm-up. (The node's CPU is not
  # shown for raw: the program's keyspace creation and drop would be in it.)
  bounded "$RAW" --rows $((2 * MESSAGES)) --rounds 1 --warmup 0 --raw-only >"$WORK/raw.out"
  # "median: raw driver RATE rows/s, US µs CPU/row": µs per row = CPU ms per 1,000 rows.
  line=$(sed -n 's|^median: raw driver \([0-9]*\) rows/s, \([0-9.]*\) .*|\1 \2|p' "$WORK/raw.out")
  [ -n "$line" ] || { cat "$WORK/raw.out" >&2; exit 1; }
  rate=${line%% *} us=${line##* }
  cpu=$(awk "BEGIN { printf \"%.4f\", $us / 1000 }")
  echo "$rate" >>"$WORK/raw.rate"
  echo "$cpu" >>"$WORK/raw.cpu"
  row "$round" raw "$rate" rows/s "$cpu" - - -
  awk -v c="$(tail -1 "$WORK/ceiling.rate")" -v e="$(tail -1 "$WORK/embedded.rate")" \
    -v k="$(tail -1 "$WORK/cassandra.rate")" -v r="$rate" -v n="$round" 'BEGIN {
      printf "round %s ratios: embedded/ceiling %.2f  cassandra/ceiling %.2f  cassandra/raw %.2f\n",
        n, e / c, k / c, k / r }'
done
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"

c=$(median <"$WORK/ceiling.rate")
e=$(median <"$WORK/embedded.rate")
k=$(median <"$WORK/cassandra.rate")
r=$(median <"$WORK/raw.rate")
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
echo "medians of $RUNS rounds (ratios are of the medians):"
printf '  ceiling (run --ack-only)   %8.0f msg/s   ecom-stream CPU %s s per 1,000 msgs\n' "$c" "$(median <"$WORK/ceiling.cpu")"
printf '  run, embedded store        %8.0f msg/s   ecom-stream CPU %s s per 1,000 msgs   %s of the ceiling\n' "$e" "$(median <"$WORK/embedded.cpu")" "$(ratio "$e" "$c")"
printf '  run --store cassandra      %8.0f msg/s   ecom-stream CPU %s s per 1,000 msgs   %s of the ceiling, %s of the raw driver\n' "$k" "$(median <"$WORK/cassandra.cpu")" "$(ratio "$k" "$c")" "$(ratio "$k" "$r")"
printf '    meanwhile: the emulator %s CPU s per 1,000 msgs' "$(median <"$WORK/emu.cpu")"
if [ -s "$WORK/node.cpu" ]; then printf ', the node %s' "$(median <"$WORK/node.cpu")"; fi
echo
printf '  raw driver (same upsert)   %8.0f rows/s  driver program CPU %s s per 1,000 rows\n' "$r" "$(median <"$WORK/raw.cpu")"
