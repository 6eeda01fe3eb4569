#!/usr/bin/env bash
# Rows/s the pipeline's FactWriter writes into Cassandra/ScyllaDB, next to a raw-driver
# baseline (the same prepared upsert at the same concurrency) measured in the same run, and
# their ratio (DESIGN §8). Source: examples/cassandra_load.rs.
#
#   ECOM_CASSANDRA_NODES=127.0.0.1:9042 load/cassandra_writer.sh [ROWS] [ROUNDS]
#       (defaults: 100000 rows per side per round, 3 rounds; medians printed)
#
# Every other ECOM_CASSANDRA_* setting applies (consistency, credentials, TLS,
# ECOM_CASSANDRA_MAX_IN_FLIGHT = requests in flight on both sides). It writes into a fresh
# keyspace ecom_load_<random> (SimpleStrategy unless ECOM_CASSANDRA_REPLICATION says
# otherwise) and drops it at the end. Without ECOM_CASSANDRA_NODES it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${ECOM_CASSANDRA_NODES:-}" ]]; then
  echo "SKIPPED: load/cassandra_writer.sh needs a live node: set ECOM_CASSANDRA_NODES (e.g. 127.0.0.1:9042)" >&2
  exit 0
fi
rows=${1:-100000}
rounds=${2:-3}
cargo build --release --quiet --example cassandra_load
exec target/release/examples/cassandra_load --rows "$rows" --rounds "$rounds"
