#!/usr/bin/env bash
# CPU of the ecom-stream process per message at a steady publish rate through Google's Pub/Sub
# emulator (issue 21): what production pays, where batches are partial, where
# load/cpu_per_message.sh drains a backlog with full ones. Modes, measured RUNS times each,
# interleaved (run 1: every mode, run 2: every mode ...), each in a fresh project on one
# emulator:
#   ceiling    `run --ack-only`: the same subscriber and streams, acking on arrival: the
#              Pub/Sub client's own cost, which every mode pays;
#   embedded   `run` into a fresh embedded SQLite data dir (synchronous=FULL, the default).
#
# Each measurement runs `setup`, starts `run`, waits for its /readyz, then starts two
# `produce --rate RATE` publishers (orders, then LAG s later payments; RATE×DURATION each,
# for the same ids in the same seeded order, so every payment has its order) that publish
# for DURATION seconds. Only the middle is measured: from WARMUP s after the orders'
# publisher starts to TAIL s before it is due to end. Over that window it takes, of the `run`
# process: user + system CPU (/proc/PID/stat), voluntary and involuntary context switches
# (per thread from /proc/PID/task/*/status; a thread that ended inside the window takes its
# switches with it, and the count of such threads is printed), and from its /metrics the messages received,
# the writer's batches (one store write each: in SQLite one commit, one fsync of the WAL)
# and the rows written. Then it waits for the publishers to finish and for every published
# message to be acked (and, when written, every order upserted and every payment joined, none
# dead-lettered), stops `run` with SIGTERM and checks its report (drained, all acked).
#
# Prints per run: deliveries per second in the window, µs of `run` CPU per message, commits
# per second, rows per commit, context switches per message (all, and the involuntary ones),
# the share of the machine's CPUs busy in the window; then the publishers' achieved rates,
# the mean store write time and receipt-to-ack time, the bytes and read/write system calls
# per message (/proc/PID/io), and the CPU and switches per message by thread. Then per mode
# the medians of the runs, and the difference embedded − ceiling (issue 21's "over
# --ack-only").
#
# usage: load/steady_rate.sh [RATE=2500] [DURATION=60] [RUNS=3] [MODES="ceiling embedded"]
#   RATE is per publisher (two of them: 2×RATE messages per second in all). From the
#   environment: WARMUP (default 15) and TAIL (default 5) seconds left out of the window,
#   LAG (default 1) seconds between the orders' publisher and the payments'; IDS (default
#   RATE×DURATION, one row per order) distinct order ids: fewer make the publishers repeat
#   them in passes (`produce --count`), so the table stays small and its pages hot;
#   ECOM_LOAD_BIN (load/lib.sh); ECOM_LOAD_PERF=FILE records `perf record` of the first
#   embedded run for PERF_SECONDS (default 20) in the middle of its window into FILE, with
#   PERF_OPTS (default "-F 499 --call-graph dwarf": release builds keep no frame pointers);
#   that run's figures include perf's own cost and are marked so.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=load/lib.sh
. load/lib.sh

RATE=${1:-2500}
DURATION=${2:-60}
RUNS=${3:-3}
MODES=${4:-ceiling embedded}
WARMUP=${WARMUP:-15}
TAIL=${TAIL:-5}
LAG=${LAG:-1}
PERF_FILE=${ECOM_LOAD_PERF:-}
PERF_SECONDS=${PERF_SECONDS:-20}
PERF_OPTS=${PERF_OPTS:--F 499 --call-graph dwarf}

WINDOW=$((DURATION - WARMUP - TAIL))
[ "$WINDOW" -ge 5 ] \
  || { echo "DURATION - WARMUP - TAIL must leave a window of at least 5 s" >&2; exit 1; }
awk -v l="$LAG" -v w="$WARMUP" 'BEGIN { exit !(l >= 0 && l < w) }' \
  || { echo "LAG must be at least 0 and below WARMUP" >&2; exit 1; }
for mode in $MODES; do
  case "$mode" in
    ceiling | embedded) ;;
    *) echo "unknown mode $mode (ceiling, embedded)" >&2; exit 1 ;;
  esac
done
if [ -n "$PERF_FILE" ]; then
  command -v perf >/dev/null || { echo "ECOM_LOAD_PERF needs perf" >&2; exit 1; }
  [ "$PERF_SECONDS" -lt "$WINDOW" ] \
    || { echo "PERF_SECONDS must be below the window ($WINDOW s)" >&2; exit 1; }
fi
N=$((RATE * DURATION))
IDS=${IDS:-$N}
[ "$IDS" -ge 1 ] && [ "$IDS" -le "$N" ] || { echo "IDS must be between 1 and $N" >&2; exit 1; }

load_bin
load_init
start_emulator
# The processes of the measurement under way; stopped at exit if a step fails.
RUN_PID='' PERF_PID='' PUB_PIDS=()
# shellcheck disable=SC2016 # expanded when the cleanups run
load_on_exit 'for p in $PERF_PID $RUN_PID ${PUB_PIDS[@]+"${PUB_PIDS[@]}"}; do
  kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done'

# Now, in seconds (the clock the samples use too).
now() { python3 -c 'import time; print(f"{time.monotonic():.3f}")'; }

# Sleeps until the monotonic time $1.
sleep_until() {
  local d
  d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$d"
}

# One /metrics scrape of the run on port $1, to stdout.
scrape() { curl -sf --max-time 10 "http://127.0.0.1:$1/metrics"; }

# A sample of the run (pid $1, metrics port $2) as JSON into $3: the time, the process's
# CPU ticks, per thread its name, CPU ticks and context switches, every /metrics series, its
# I/O tallies (/proc/PID/io), the emulator's CPU ticks and the machine's busy and total CPU
# ticks (/proc/stat).
sample() {
  python3 - "$1" "$2" "$3" "$EMU_PID" <<'PY'
import json, os, sys, time, urllib.request
pid, port, out, emu = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def ticks(path):
    with open(path) as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])
t = time.monotonic()
tasks = {}
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            comm = f.read().strip()
        st = {}
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                st[k] = v.strip()
        tasks[tid] = [comm, ticks(f"/proc/{pid}/task/{tid}/stat"),
                      int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"])]
    except (FileNotFoundError, ProcessLookupError):
        pass  # the thread ended between the listing and the read
cpu = ticks(f"/proc/{pid}/stat")
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
    text = r.read().decode()
metrics = {}
for line in text.splitlines():
    if not line or line.startswith("#"):
        continue
    key, _, value = line.rpartition(" ")
    try:
        metrics[key] = float(value)
    except ValueError:
        pass
io = {}
with open(f"/proc/{pid}/io") as f:
    for line in f:
        k, _, v = line.partition(":")
        io[k] = int(v)
with open("/proc/stat") as f:
    c = [int(x) for x in f.readline().split()[1:]]
busy, total = sum(c) - c[3] - c[4], sum(c)
json.dump({"t": t, "cpu": cpu, "tasks": tasks, "metrics": metrics, "io": io,
           "emu": ticks(f"/proc/{emu}/stat"), "machine": [busy, total]}, open(out, "w"))
PY
}

# Waits (up to LOAD_STEP_TIMEOUT s) until the run on port $1 has acked $2 orders and $3
# payments and, in mode $4 = embedded, upserted $2 orders and joined $3 payments.
await_answered() {
  local port=$1 orders=$2 payments=$3 mode=$4 deadline
  deadline=$(awk -v n="$(now)" -v s="${LOAD_STEP_TIMEOUT:-900}" 'BEGIN { print n + s }')
  while :; do
    if scrape "$port" >"$WORK/final.prom" && python3 - "$WORK/final.prom" "$orders" "$payments" "$mode" <<'PY'; then
import sys
m = {}
for line in open(sys.argv[1]):
    if line.strip() and not line.startswith("#"):
        k, _, v = line.rpartition(" ")
        m[k] = float(v)
orders, payments, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ok = (m.get('ecom_stream_messages_acked_total{source="orders"}', 0) >= orders
      and m.get('ecom_stream_messages_acked_total{source="payments"}', 0) >= payments)
if mode == "embedded":
    joined = m.get("ecom_stream_payments_joined_total", 0) + m.get("ecom_stream_payments_joined_after_hold_total", 0)
    ok = ok and m.get("ecom_stream_orders_upserted_total", 0) >= orders and joined >= payments
sys.exit(0 if ok else 1)
PY
      return 0
    fi
    kill -0 "$RUN_PID" 2>/dev/null || { echo "run ended before answering everything" >&2; cat "$WORK/run.err" >&2; exit 1; }
    if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then
      echo "not everything was answered within ${LOAD_STEP_TIMEOUT:-900} s; last /metrics in $WORK/final.prom:" >&2
      grep -E 'acked_total|nacked_total|upserted_total|joined|dead_lettered|held' "$WORK/final.prom" >&2 || true
      exit 1
    fi
    sleep 1
  done
}

# One measurement: steady_measure MODE RUN_NUMBER. Prints its lines and appends its figures
# to $WORK/MODE.figures (one line per run: µs/msg, commits/s, rows/commit, cs/msg, inv/msg,
# msg/s).
steady_measure() {
  local mode=$1 run=$2 extra=() port dir project t0 a b perf_note=
  [ "$mode" = ceiling ] && extra=(--ack-only)
  project="steady-$mode-$run-$$"
  dir=$WORK/$project
  export ECOM_PROJECT=$project
  port=$(free_port)
  export ECOM_METRICS_ADDR=127.0.0.1:$port
  bounded "$BIN" --data-dir "$dir" setup >"$WORK/setup.out" 2>&1 \
    || { cat "$WORK/setup.out" >&2; exit 1; }
  "$BIN" --data-dir "$dir" run --json "${extra[@]}" >"$WORK/run.json" 2>"$WORK/run.err" &
  RUN_PID=$!
  for _ in $(seq 1 240); do
    curl -sf --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$RUN_PID" 2>/dev/null || { echo "run exited before it was ready" >&2; cat "$WORK/run.err" >&2; exit 1; }
    sleep 0.5
  done
  curl -sf --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null \
    || { echo "run was not ready within 120 s" >&2; cat "$WORK/run.err" >&2; exit 1; }
  # The same --ids and seed give both publishers the same order of ids, so each payment
  # goes out LAG s after its order: it finds the order known (with LAG=0 the publisher that
  # connects first leads, and with it how many payments are held).
  # `timeout` itself in the background (not `bounded`, a function, whose subshell would not
  # pass a SIGTERM on), so that $! is the process to stop.
  PUB_PIDS=()
  timeout --kill-after=30 "${LOAD_STEP_TIMEOUT:-900}" "$BIN" produce orders --ids "1..=$IDS" \
    --count "$N" --rate "$RATE" --json >"$WORK/pub.orders.json" 2>"$WORK/pub.orders.err" &
  PUB_PIDS+=($!)
  t0=$(now)
  sleep "$LAG"
  timeout --kill-after=30 "${LOAD_STEP_TIMEOUT:-900}" "$BIN" produce payments --ids "1..=$IDS" \
    --count "$N" --rate "$RATE" --json >"$WORK/pub.payments.json" 2>"$WORK/pub.payments.err" &
  PUB_PIDS+=($!)
  sleep_until "$(awk -v t="$t0" -v w="$WARMUP" 'BEGIN { print t + w }')"
  a=$WORK/a.json b=$WORK/b.json
  sample "$RUN_PID" "$port" "$a"
  if [ -n "$PERF_FILE" ] && [ "$mode" = embedded ] && [ ! -e "$PERF_FILE" ]; then
    sleep_until "$(awk -v t="$t0" -v w="$WARMUP" -v win="$WINDOW" -v p="$PERF_SECONDS" 'BEGIN { print t + w + (win - p) / 2 }')"
    # shellcheck disable=SC2086 # PERF_OPTS is a list of options
    perf record -q $PERF_OPTS -p "$RUN_PID" -o "$PERF_FILE" -- sleep "$PERF_SECONDS" \
      >"$WORK/perf.out" 2>&1 &
    PERF_PID=$!
    perf_note=" (under perf record for ${PERF_SECONDS} s)"
  fi
  sleep_until "$(awk -v t="$t0" -v d="$DURATION" -v e="$TAIL" 'BEGIN { print t + d - e }')"
  sample "$RUN_PID" "$port" "$b"
  if [ -n "$PERF_PID" ]; then
    wait "$PERF_PID" || { cat "$WORK/perf.out" >&2; exit 1; }
    PERF_PID=
  fi
  for p in "${PUB_PIDS[@]}"; do
    wait "$p" || { cat "$WORK"/pub.*.err >&2; exit 1; }
  done
  PUB_PIDS=()
  await_answered "$port" "$N" "$N" "$mode"
  kill -TERM "$RUN_PID"
  local rc=0
  wait "$RUN_PID" || rc=$?
  RUN_PID=
  [ "$rc" -eq 0 ] || { echo "run exited with $rc after SIGTERM" >&2; cat "$WORK/run.err" >&2; exit 1; }
  python3 - "$a" "$b" "$WORK/run.json" "$WORK/pub.orders.json" "$WORK/pub.payments.json" \
    "$mode" "$run" "$N" "$(getconf CLK_TCK)" "$perf_note" "$WORK/$mode.figures" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
report = json.load(open(sys.argv[3]))
pubs = [json.load(open(p)) for p in sys.argv[4:6]]
mode, run, n, hz, note, figures = sys.argv[6], sys.argv[7], int(sys.argv[8]), int(sys.argv[9]), sys.argv[10], sys.argv[11]

# The run's own report: every published message acked, the drain finished.
published = [p["published"] for p in pubs]
if published != [n, n]:
    sys.exit(f"the publishers confirmed {published}, not {n} each")
for kind in ("orders", "payments"):
    if report[kind]["acked"] < n:
        sys.exit(f"run acked only {report[kind]['acked']} of {n} {kind}")
if not report["drained"]:
    sys.exit("run did not drain at SIGTERM")
s = report["stats"]
check = f"all {n}+{n} acked"
if mode == "embedded":
    joined = s["payments_joined"] + s["payments_joined_after_hold"]
    if s["orders_upserted"] < n or joined < n or s["dead_lettered"]:
        sys.exit(f"{s['orders_upserted']} orders upserted, {joined} payments joined, "
                 f"{s['dead_lettered']} dead-lettered, of {n} each")
    check += (f", {s['orders_upserted']} orders upserted, {joined} payments joined "
              f"({s['payments_joined_after_hold']} after a hold), 0 dead-lettered")
nacked = report["orders"]["nacked"] + report["payments"]["nacked"]
if nacked:
    check += f", {nacked} nacked (redelivered and acked since)"

def metric(sample, name):
    m = sample["metrics"]
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))
def delta(name):
    return metric(b, name) - metric(a, name)

secs = b["t"] - a["t"]
msgs = delta("ecom_stream_messages_received_total")
if msgs <= 0:
    sys.exit("no message received in the window")
cpu_s = (b["cpu"] - a["cpu"]) / hz
commits = delta("ecom_stream_writer_batches_total")
rows = delta("ecom_stream_rows_written_total")
write_s = delta("ecom_stream_write_duration_seconds_sum")
write_n = delta("ecom_stream_write_duration_seconds_count")

# Context switches per thread: a thread born in the window counts from zero; one that ended
# in it is lost (counted in `gone`).
# Threads keep their kernel names, numbered by thread id within a name. In `run` today:
# ecom-stream is the main thread (the System's runtime: the gRPC connections), the
# actix-rt|system ones are arbiters in the order they started (the writer's and dead
# letters', each shard's, the subscribers'), tokio-rt-worker the blocking pool (SQLite).
threads, vol, inv, seen = [], 0, 0, {}
gone = sum(1 for tid in a["tasks"] if tid not in b["tasks"])
for tid in sorted(b["tasks"], key=int):
    comm, cpu, v, i = b["tasks"][tid]
    _, cpu0, v0, i0 = a["tasks"].get(tid, [comm, 0, 0, 0])
    seen[comm] = seen.get(comm, 0) + 1
    threads.append((f"{comm}#{seen[comm]}", cpu - cpu0, v - v0 + i - i0))
    vol += v - v0; inv += i - i0
mb, mt = (b["machine"][0] - a["machine"][0]), (b["machine"][1] - a["machine"][1])
busy = 100 * mb / mt if mt else 0
emu = (b["emu"] - a["emu"]) / hz / secs

us = cpu_s * 1e6 / msgs
cps = commits / secs
rpc = rows / commits if commits else 0
cs = (vol + inv) / msgs
ics = inv / msgs
print(f"{run:<4} {mode:<9} {msgs / secs:8.0f} {us:9.2f} {cps:10.1f} {rpc:9.1f} {cs:8.3f} {ics:8.3f} {busy:6.0f} %{note}")
rates = " + ".join(f"{p['per_second']:.0f}/s ({p['published']} in {p['elapsed_s']:.1f} s)" for p in pubs)
print(f"#    published {rates}; {check}")
extra = f"emulator {emu:.2f} CPUs; window {secs:.1f} s, {msgs:.0f} messages"
if mode == "embedded":
    extra += f", {delta('ecom_stream_payments_held_total'):.0f} payments held"
if write_n:
    extra += f"; store write {1000 * write_s / write_n:.2f} ms mean wall time"
ack_n = delta("ecom_stream_pubsub_ack_latency_seconds_count")
if ack_n:
    extra += f"; receipt to ack {1000 * delta('ecom_stream_pubsub_ack_latency_seconds_sum') / ack_n:.2f} ms mean"
print(f"#    {extra}")
io = {k: b["io"][k] - a["io"][k] for k in b["io"]}
print(f"#    per message: {io['wchar'] / msgs / 1024:.2f} KiB written by write calls "
      f"({io['write_bytes'] / msgs / 1024:.2f} KiB reached storage), {io['rchar'] / msgs / 1024:.2f} KiB read; "
      f"{io['syscw'] / msgs:.3f} write and {io['syscr'] / msgs:.3f} read system calls (sockets and eventfds included)")
parts = [f"{name} {ticks / hz * 1e6 / msgs:.2f} µs {cs_ / msgs:.3f} cs"
         for name, ticks, cs_ in sorted(threads, key=lambda t: -t[1]) if ticks or cs_]
print(f"#    by thread (µs CPU, context switches per message): {'; '.join(parts)}"
      + (f"; {gone} thread(s) ended in the window" if gone else ""))
with open(figures, "a") as f:
    f.write(f"{us:.4f} {cps:.2f} {rpc:.2f} {cs:.4f} {ics:.4f} {msgs / secs:.1f}\n")
PY
  rm -rf "$dir"
}

echo "# $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at start; binary $BIN"
echo "# emulator $PUBSUB_EMULATOR_HOST; 2 publishers at $RATE msg/s each for ${DURATION} s ($N + $N);" \
  "ids 1..=$IDS; window from ${WARMUP} s to $((DURATION - TAIL)) s; $RUNS runs per mode"
printf '%-4s %-9s %8s %9s %10s %9s %8s %8s %8s\n' \
  run mode msg/s "µs CPU/msg" commits/s rows/cmt cs/msg inv/msg "busy"
for mode in $MODES; do : >"$WORK/$mode.figures"; done
for run in $(seq 1 "$RUNS"); do
  for mode in $MODES; do
    steady_measure "$mode" "$run"
  done
done
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"

echo "medians of $RUNS runs (per message: ecom-stream CPU, context switches):"
for mode in $MODES; do
  f=$WORK/$mode.figures
  printf '  %-9s %8.2f µs  %8.1f commits/s  %7.1f rows/commit  %6.3f cs/msg  %6.3f involuntary  %6.0f msg/s\n' \
    "$mode" "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)" \
    "$(cut -d' ' -f3 "$f" | median)" "$(cut -d' ' -f4 "$f" | median)" \
    "$(cut -d' ' -f5 "$f" | median)" "$(cut -d' ' -f6 "$f" | median)"
done
if [[ " $MODES " == *" ceiling "* && " $MODES " == *" embedded "* ]]; then
  c=$(cut -d' ' -f1 "$WORK/ceiling.figures" | median)
  e=$(cut -d' ' -f1 "$WORK/embedded.figures" | median)
  cc=$(cut -d' ' -f4 "$WORK/ceiling.figures" | median)
  ec=$(cut -d' ' -f4 "$WORK/embedded.figures" | median)
  printf 'embedded − ceiling (over --ack-only): %+.2f µs CPU per message, %+.3f context switches per message\n' \
    "$(awk "BEGIN { print $e - $c }")" "$(awk "BEGIN { print $ec - $cc }")"
fi
