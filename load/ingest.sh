#!/usr/bin/env bash
# `ecom-stream ingest` throughput into the embedded store, as a ratio against raw batched
# writes to the same store measured in the same run (design §8).
#
#   load/ingest.sh [N] [RUNS]      (defaults: 100000 orders + 100000 payments, 3 runs)
#
# Files: N orders and one payment per order, JSON lines, written once (every payment has its
# order, so nothing waits out a hold). RUNS rounds, each: `ecom-stream ingest` of both files
# on a fresh data dir, timed by ingest itself (records read / elapsed, from its --json
# report; three of them, their median), then the baselines, `cargo bench --bench writer` writer/raw_orders_then_payments
# (the same kind of writes ingest makes: orders inserted, then a payment updating each row,
# through FactSink::write_facts in batches of 1,000) and writer/raw_batched (order inserts
# only). The rounds interleave because this machine's speed drifts by tens of percent over
# minutes: a baseline measured minutes after the runs it divides is not "the same run".
# Prints each round's ratios and the medians.
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh
load_init
n=${1:-100000}
runs=${2:-3}
load_bin
bin=$BIN
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
bounded cargo bench --quiet --bench writer --no-run 2>/dev/null
for i in $(seq 1 "$runs"); do
  # Three ingests per round, their median taken: one ingest lasts under a second, and single
  # runs scatter more than the criterion baselines do.
  for j in 1 2 3; do
    bounded "$bin" --log warn --data-dir "$WORK/run$i-$j" ingest --orders "$WORK/orders.jsonl" \
      --payments "$WORK/payments.jsonl" --json > "$WORK/run$i-$j.json"
    rm -rf "$WORK/run$i-$j"
  done
  bounded cargo bench --quiet --bench writer -- --noplot writer/raw > "$WORK/bench$i" 2>/dev/null
  python3 - "$WORK/bench$i" "$i" "$WORK"/run"$i"-?.json >> "$WORK/rounds" <<'PY'
import json, re, statistics, sys
reports = [json.load(open(f)) for f in sys.argv[3:]]
for r in reports:
    recs = r["orders"]["records"] + r["payments"]["records"]
    assert r["rows_written"] == recs and r["invalid"] == 0 and r["dead_lettered"] == 0, r
r = sorted(reports, key=lambda r: r["records_per_second"])[len(reports) // 2]
text = open(sys.argv[1]).read()
scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
def raw(name):
    # criterion's middle estimate, e.g. `thrpt:  [301.2 Kelem/s 305.9 Kelem/s 310.1 Kelem/s]`.
    m = re.search(r"writer/" + name + r"\b.*?thrpt:\s*\[\S+ \S+ (\S+) (\w?)elem/s", text, re.S)
    if not m:
        sys.exit(f"no figure for writer/{name} in the bench output")
    return float(m.group(1)) * scale[m.group(2)]
ingest, same, inserts = r["records_per_second"], raw("raw_orders_then_payments"), raw("raw_batched")
runs = " / ".join(f"{x['records_per_second']:,.0f}" for x in reports)
print(f"round {sys.argv[2]}: ingest {runs} -> {ingest:,.0f} records/s; raw same writes "
      f"{same:,.0f}/s -> {ingest / same:.2f}; raw inserts {inserts:,.0f}/s -> {ingest / inserts:.2f}",
      file=sys.stderr)
print(ingest, same, inserts, ingest / same, ingest / inserts)
PY
done
python3 - "$WORK/rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f"medians of {len(rows)} rounds: ingest {med[0]:,.0f} records/s; "
      f"raw same writes {med[1]:,.0f} writes/s; raw inserts {med[2]:,.0f} writes/s")
print(f"ingest / raw same writes = {med[3]:.2f} (median of the rounds' ratios)")
print(f"ingest / raw inserts only = {med[4]:.2f} (median of the rounds' ratios)")
PY
