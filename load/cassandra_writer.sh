#!/usr/bin/env bash
# Rows/s the pipeline's FactWriter writes into Cassandra/ScyllaDB, next to a raw-driver
# baseline (the same prepared upsert at the same concurrency) measured in the same run, and
# their ratio (design §8). Source: examples/cassandra_load.rs.
#
#   load/cassandra_writer.sh [ROWS] [ROUNDS]
#       (defaults: 100000 rows per side per round, 3 rounds; medians printed)
#
# With ECOM_CASSANDRA_NODES set, it writes to that node or cluster. Without it, it starts
# its own Apache Cassandra node (scripts/cassandra-node: Java 17 and Maven needed; heap
# ECOM_LOAD_CASSANDRA_HEAP, default 1G) in a temp dir on free loopback ports, and stops it
# by its PID when it exits, however it exits.
#
# Every other ECOM_CASSANDRA_* setting applies (consistency, credentials, TLS,
# ECOM_CASSANDRA_MAX_IN_FLIGHT = requests in flight on both sides). It writes into a fresh
# keyspace ecom_load_<random> (SimpleStrategy unless ECOM_CASSANDRA_REPLICATION says
# otherwise) and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh
rows=${1:-100000}
rounds=${2:-3}
cargo build --release --quiet --example cassandra_load
load_init
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
if [[ -n "${ECOM_CASSANDRA_NODES:-}" ]]; then
  LOAD_STEP_TIMEOUT=${LOAD_STEP_TIMEOUT:-3600} bounded target/release/examples/cassandra_load --rows "$rows" --rounds "$rounds"
  exit
fi
start_cassandra "${ECOM_LOAD_CASSANDRA_HEAP:-1G}"
echo "# Apache Cassandra $CASS_VERSION started by this script: pid $CASS_PID, heap ${ECOM_LOAD_CASSANDRA_HEAP:-1G}, $ECOM_CASSANDRA_NODES"
node_before=$(proc_cpu "$CASS_PID")
LOAD_STEP_TIMEOUT=${LOAD_STEP_TIMEOUT:-3600} bounded target/release/examples/cassandra_load --rows "$rows" --rounds "$rounds"
node_cpu=$(awk "BEGIN { print $(proc_cpu "$CASS_PID") - $node_before }")
echo "# the node's own CPU meanwhile: ${node_cpu} s for $((2 * rows * rounds)) measured rows (plus the warm-up and the schema)"
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
