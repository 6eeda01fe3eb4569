#!/usr/bin/env bash
# End-to-end throughput of the whole pipeline into the embedded store, as a ratio against
# the store's own ceiling measured in the same run (design §8).
#
#   load/demo_at_scale.sh [ORDERS] [RUNS]      (defaults: 200000 orders, 5 runs)
#
# Each run: `ecom-stream demo --orders N --payments N --hold 200ms` on a fresh data dir
# (every payment has its order; ~2% duplicates), timed by the demo itself from first
# delivery to last ack. Baseline: `cargo bench --bench writer` (raw batched writes to the
# same store). Prints the median of RUNS runs. Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-200000}
runs=${2:-5}
cargo build --release --quiet
bin=target/release/ecom-stream
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "cores: $(nproc); orders: $orders; payments: $orders; runs: $runs"
for i in $(seq 1 "$runs"); do
  "$bin" --log warn --data-dir "$tmp/run$i" demo --orders "$orders" --payments "$orders" --hold 200ms --json \
    > "$tmp/run$i.json"
done
python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
rates = []
for i in range(1, runs + 1):
    r = json.load(open(f"{tmp}/run{i}.json"))
    secs = r["elapsed"]["secs"] + r["elapsed"]["nanos"] / 1e9
    rates.append(r["source"]["acked"] / secs)
    print(f"run {i}: {r['source']['acked']} messages acked in {secs:.2f}s = {rates[-1]:,.0f} msg/s")
print(f"pipeline end to end (median): {statistics.median(rates):,.0f} msg/s")
PY
echo "baseline (raw batched writes to the same store, same machine):"
cargo bench --quiet --bench writer -- --noplot writer/raw_batched 2>/dev/null | grep -E "thrpt" || true
