"""Python baseline of gatewayd-bench: the publisher many users run, on
Debian's python3-paho-mqtt (1.6). It publishes the same simulated readings
as gatewayd (topic ROOT/RUN/SENSOR/QUANTITY, the same JSON), every sensor
read every --interval, at --qos, with at most --window publishes awaiting
their acknowledgement. It stops at SIGTERM or after --duration and prints
its counts."""

import argparse
import math
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt

QUANTITIES = (("temperature", "°C"), ("humidity", "%"))


def fmt_value(v):
    s = "%.2f" % v
    return s.rstrip("0").rstrip(".")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--root", default="bench")
    ap.add_argument("--run", default="python")
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--window", type=int, default=100)
    a = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cond = threading.Condition()
    state = {"acked": 0, "connected": False}

    def on_connect(client, userdata, flags, rc):
        with cond:
            state["connected"] = rc == 0
            cond.notify_all()

    def on_publish(client, userdata, mid):
        with cond:
            state["acked"] += 1
            cond.notify_all()

    c = mqtt.Client(client_id="bench-" + a.run, clean_session=False)
    c.max_inflight_messages_set(a.window)
    c.max_queued_messages_set(0)
    c.on_connect = on_connect
    c.on_publish = on_publish
    c.connect(a.host, a.port, keepalive=30)
    c.loop_start()
    with cond:
        if not cond.wait_for(lambda: state["connected"], timeout=10):
            print("no CONNACK within 10s", file=sys.stderr)
            return 1

    topics = [["%s/%s/s%d/%s" % (a.root, a.run, i, q) for q, _ in QUANTITIES] for i in range(a.sensors)]
    heads = [['{"sensor":"s%d","quantity":"%s","value":' % (i, q) for q, _ in QUANTITIES] for i in range(a.sensors)]
    seq = [0] * a.sensors
    published = 0
    step = 0
    start = time.monotonic()
    next_read = start
    while not stop.is_set() and time.monotonic() - start < a.duration:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)
        for i in range(a.sensors):
            seq[i] += 1
            step += 1
            w = math.sin((step % 628) / 100)
            values = (round(21 + 2.5 * w, 2), round(45 - 8 * w, 2))
            for q, (_, unit) in enumerate(QUANTITIES):
                payload = '%s%s,"unit":"%s","time":"%s","seq":%d}' % (heads[i][q], fmt_value(values[q]), unit, stamp, seq[i])
                with cond:
                    cond.wait_for(lambda: published - state["acked"] < a.window, timeout=5)
                c.publish(topics[i][q], payload.encode(), qos=a.qos)
                published += 1
        next_read += a.interval
        delay = next_read - time.monotonic()
        if delay < 0:
            next_read = time.monotonic()  # fell behind: do not catch up
        else:
            stop.wait(delay)

    # Whatever paho's network thread does now (with the broker gone it may
    # keep reconnecting), exit within 10 s.
    watchdog = threading.Timer(10, os._exit, [1])
    watchdog.daemon = True
    watchdog.start()
    with cond:
        cond.wait_for(lambda: state["acked"] >= published, timeout=5)
    c.disconnect()
    print("published=%d acked=%d" % (published, state["acked"]), flush=True)
    os._exit(0)  # the network thread is a daemon: no join


if __name__ == "__main__":
    sys.exit(main())
