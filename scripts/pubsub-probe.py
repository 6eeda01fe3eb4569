"""Probe of the Pub/Sub emulator's delivery after a subscriber goes away (RESILIENCE.md,
"Streams that go away"), with Google's Python client (pip install google-cloud-pubsub).

usage (PUBSUB_EMULATOR_HOST set):
  probe.py setup PROJECT TOPIC SUB DEADLINE_S
  probe.py publish PROJECT TOPIC N
  probe.py pull PROJECT SUB N SECONDS        # unary pulls, acking, until N or SECONDS
  probe.py pysub PROJECT SUB SECONDS         # a streaming-pull subscriber, closed cleanly
"""
import sys
import time

from google.cloud import pubsub_v1

cmd, project = sys.argv[1], sys.argv[2]

if cmd == "setup":
    topic, sub, deadline = sys.argv[3], sys.argv[4], int(sys.argv[5])
    pub = pubsub_v1.PublisherClient()
    s = pubsub_v1.SubscriberClient()
    tp = pub.topic_path(project, topic)
    try:
        pub.create_topic(name=tp)
    except Exception as e:  # exists
        print("topic:", type(e).__name__)
    s.create_subscription(
        name=s.subscription_path(project, sub), topic=tp, ack_deadline_seconds=deadline
    )
elif cmd == "publish":
    topic, n = sys.argv[3], int(sys.argv[4])
    pub = pubsub_v1.PublisherClient()
    tp = pub.topic_path(project, topic)
    fs = [pub.publish(tp, b"x%d" % i) for i in range(n)]
    for f in fs:
        f.result()
    print("published", n)
elif cmd == "pull":
    sub, n, secs = sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    s = pubsub_v1.SubscriberClient()
    sp = s.subscription_path(project, sub)
    seen = set()
    start = time.time()
    last_print = -1
    while time.time() - start < secs and len(seen) < n:
        r = s.pull(subscription=sp, max_messages=1000, timeout=5, return_immediately=False)
        ids = [m.ack_id for m in r.received_messages]
        for m in r.received_messages:
            seen.add(m.message.message_id)
        if ids:
            s.acknowledge(subscription=sp, ack_ids=ids)
        t = int(time.time() - start)
        if t // 10 != last_print:
            last_print = t // 10
            print(f"  t={t:4d}s pulled={len(seen)}", flush=True)
    print(f"PULLED {len(seen)} of {n} in {time.time() - start:.1f}s", flush=True)
elif cmd == "pysub":
    sub, secs = sys.argv[3], float(sys.argv[4])
    s = pubsub_v1.SubscriberClient()
    sp = s.subscription_path(project, sub)
    got = []
    fut = s.subscribe(sp, callback=lambda m: (got.append(1), m.ack()))
    time.sleep(secs)
    fut.cancel()
    fut.result()
    s.close()
    print("python subscriber closed after", len(got), "messages")
