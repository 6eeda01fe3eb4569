#!/usr/bin/env bash
# End-to-end throughput through Google's Pub/Sub emulator (design §8): `run` (subscribers →
# join → embedded store, dead letters to the DLQ topic) next to the bare-subscriber ceiling
# (`run --ack-only`: the same subscriber, same streams, acking on arrival), both in the same
# run of this script, on the same emulator.
#
# Each measurement publishes MESSAGES orders and MESSAGES payments (ids 1..=MESSAGES, so
# every payment joins) before `run` starts, then `run --until-idle 3s` consumes the backlog
# and reports deliveries per second between its first delivery and its last answer.
#
# usage: load/pubsub_pipeline.sh [MESSAGES=100000] [RUNS=3] [STREAMS="8"]
#   STREAMS may list several counts ("1 4 8 16"): each is measured RUNS times, both modes.
# Prints one line per measurement and, per stream count, the medians and their ratio.
# (load/pubsub_cassandra.sh does the same with the Cassandra store, and CPU per message.)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh

MESSAGES=${1:-100000}
RUNS=${2:-3}
STREAMS=${3:-8}

cargo build --release --quiet
BIN=$PWD/target/release/ecom-stream
load_init
start_emulator
export ECOM_METRICS_ADDR=127.0.0.1:0
echo "# $(nproc) cores; emulator pid $EMU_PID on $PUBSUB_EMULATOR_HOST; $MESSAGES orders + $MESSAGES payments per measurement"

printf '%-8s %-4s %-9s %12s\n' streams run mode msg/s
for s in $STREAMS; do
  : >"$WORK/ceiling" && : >"$WORK/pipeline"
  for run in $(seq 1 "$RUNS"); do
    for mode in ceiling pipeline; do
      store=$mode
      [ "$mode" = pipeline ] && store=embedded
      out=$(measure_run "$MESSAGES" "$store" "$s" "$run")
      rate=${out%% *}
      echo "$rate" >>"$WORK/$mode"
      printf '%-8s %-4s %-9s %12s\n' "$s" "$run" "$mode" "$rate"
    done
  done
  c=$(median <"$WORK/ceiling"); p=$(median <"$WORK/pipeline")
  printf 'streams %-3s median ceiling %8.0f msg/s  pipeline %8.0f msg/s  ratio %.2f\n' \
    "$s" "$c" "$p" "$(awk "BEGIN { print $p / $c }")"
done
