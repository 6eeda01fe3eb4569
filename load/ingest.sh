#!/usr/bin/env bash
# `ecom-stream ingest` throughput into the embedded store, as a ratio against raw batched
# writes to the same store measured in the same run (design §8).
#
#   load/ingest.sh [N] [RUNS]      (defaults: 100000 orders + 100000 payments, 3 runs)
#
# Files: N orders and one payment per order, JSON lines, written once (every payment has its
# order, so nothing waits out a hold). Each run: `ecom-stream ingest` of both files on a
# fresh data dir, timed by ingest itself (records read / elapsed, from its --json report).
# Baselines: `cargo bench --bench writer` writer/raw_orders_then_payments (the same kind of
# writes ingest makes: orders inserted, then a payment updating each row, through
# FactSink::write_facts in batches of 1,000) and writer/raw_batched (order inserts only).
# Prints each run, the median and the ratio against each.
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh
load_init
n=${1:-100000}
runs=${2:-3}
cargo build --release --quiet
bin=target/release/ecom-stream
echo "cores: $(nproc); orders: $n; payments: $n; runs: $runs"
python3 - "$WORK" "$n" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
with open(f"{work}/orders.jsonl", "w") as o, open(f"{work}/payments.jsonl", "w") as p:
    for i in range(1, n + 1):
        o.write(json.dumps({"order_id": i, "customer_id": 1 + i % 997, "item": "Laptop",
            "quantity": 1 + i % 5, "price": 10.5 + i % 100, "shipping_address": f"{i} Main St",
            "order_status": "Shipped", "creation_date": "2024-05-01 13:45:10"}) + "\n")
        p.write(json.dumps({"payment_id": 1_000_000 + i, "order_id": i,
            "payment_method": "Credit Card", "card_last_four": "1234",
            "payment_status": "Completed", "payment_datetime": "2024-05-01 13:50:00"}) + "\n")
PY
for i in $(seq 1 "$runs"); do
  bounded "$bin" --log warn --data-dir "$WORK/run$i" ingest --orders "$WORK/orders.jsonl" \
    --payments "$WORK/payments.jsonl" --json > "$WORK/run$i.json"
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
recs = r["orders"]["records"] + r["payments"]["records"]
assert r["rows_written"] == recs and r["invalid"] == 0 and r["dead_lettered"] == 0, r
elapsed, rate = r["elapsed_s"], r["records_per_second"]
print(f"run {sys.argv[2]}: {recs} records in {elapsed:.2f}s = {rate:,.0f} records/s", file=sys.stderr)
print(r["records_per_second"])' "$WORK/run$i.json" "$i" >> "$WORK/rates"
done
ingest=$(median < "$WORK/rates")
echo "ingest (median of $runs): $(printf '%.0f' "$ingest") records/s"
echo "baselines (raw batched writes to the same store, same machine):"
bounded cargo bench --quiet --bench writer -- --noplot writer/raw 2>/dev/null \
  | tee "$WORK/bench" | grep -E "^writer/|thrpt" || true
# criterion's middle estimate of each bench, e.g. `thrpt:  [301.2 Kelem/s 305.9 Kelem/s 310.1 Kelem/s]`.
python3 - "$WORK/bench" "$ingest" <<'PY'
import re, sys
text, ingest = open(sys.argv[1]).read(), float(sys.argv[2])
scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
found = 0
for name, what in [("raw_orders_then_payments", "the same writes (orders inserted, then payments updating their rows)"),
                   ("raw_batched", "order inserts only (the writer bench's baseline)")]:
    m = re.search(r"writer/" + name + r"\b.*?thrpt:\s*\[\S+ \S+ (\S+) (\w?)elem/s", text, re.S)
    if not m:
        continue
    found += 1
    raw = float(m.group(1)) * scale[m.group(2)]
    print(f"raw writes, {what}: {raw:,.0f} writes/s; ingest / raw = {ingest / raw:.2f}")
if not found:
    sys.exit("no baseline figure found in the bench output")
PY
