#!/usr/bin/env bash
# End-to-end throughput through Google's Pub/Sub emulator (DESIGN §8): `run` (subscribers →
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
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=${1:-100000}
RUNS=${2:-3}
STREAMS=${3:-8}
EMULATOR=${ECOM_TEST_PUBSUB_EMULATOR:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}

[ -x "$EMULATOR" ] || { echo "no Pub/Sub emulator at $EMULATOR" >&2; exit 1; }
command -v java >/dev/null || { echo "the Pub/Sub emulator needs java" >&2; exit 1; }

cargo build --release --quiet
BIN=$PWD/target/release/ecom-stream
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$EMULATOR" --host=127.0.0.1 --port="$PORT" >"$WORK/emulator.log" 2>&1 &
EMU_PID=$!
trap 'kill "$EMU_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 240); do
  grep -q "Server started" "$WORK/emulator.log" && break
  kill -0 "$EMU_PID" || { cat "$WORK/emulator.log" >&2; exit 1; }
  sleep 0.5
done
export PUBSUB_EMULATOR_HOST=127.0.0.1:$PORT
export ECOM_METRICS_ADDR=127.0.0.1:0
echo "# $(nproc) cores; emulator pid $EMU_PID on $PUBSUB_EMULATOR_HOST; $MESSAGES orders + $MESSAGES payments per measurement"

measure() { # mode streams run → msg/s
  local mode=$1 streams=$2 run=$3
  local project="load-$mode-$streams-$run-$$"
  local dir="$WORK/$project"
  export ECOM_PROJECT=$project
  "$BIN" --data-dir "$dir" setup >/dev/null 2>&1
  "$BIN" produce orders --ids "1..=$MESSAGES" --json >/dev/null 2>&1
  "$BIN" produce payments --ids "1..=$MESSAGES" --json >/dev/null 2>&1
  local extra=()
  [ "$mode" = ceiling ] && extra=(--ack-only)
  "$BIN" --data-dir "$dir" run --json --until-idle 3s --hold 30s \
    --pubsub-streams "$streams" "${extra[@]}" 2>"$WORK/run.err" >"$WORK/run.json" \
    || { cat "$WORK/run.err" >&2; exit 1; }
  python3 - "$WORK/run.json" "$MESSAGES" "$mode" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
n, mode = int(sys.argv[2]), sys.argv[3]
delivered = r["orders"]["delivered"] + r["payments"]["delivered"]
if delivered < 2 * n:
    sys.exit(f"only {delivered} of {2 * n} delivered")
if mode == "pipeline" and r["stats"]["orders_upserted"] < n:
    sys.exit(f"only {r['stats']['orders_upserted']} orders upserted")
print(f"{r['per_second']:.0f}")
EOF
  rm -rf "$dir"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-8s %-4s %-9s %12s\n' streams run mode msg/s
for s in $STREAMS; do
  : >"$WORK/ceiling" && : >"$WORK/pipeline"
  for run in $(seq 1 "$RUNS"); do
    for mode in ceiling pipeline; do
      rate=$(measure "$mode" "$s" "$run")
      echo "$rate" >>"$WORK/$mode"
      printf '%-8s %-4s %-9s %12s\n' "$s" "$run" "$mode" "$rate"
    done
  done
  c=$(median <"$WORK/ceiling"); p=$(median <"$WORK/pipeline")
  printf 'streams %-3s median ceiling %8.0f msg/s  pipeline %8.0f msg/s  ratio %.2f\n' \
    "$s" "$c" "$p" "$(awk "BEGIN { print $p / $c }")"
done
