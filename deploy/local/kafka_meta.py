#!/usr/bin/env python3
"""Send one Kafka Metadata request (v4, all topics) and print the brokers and topics.

Standard library only (the system python3 runs it, before the venv exists). Used by kafka.sh
as its readiness check: exits 0 only when the broker answers with at least one broker.

    kafka_meta.py 127.0.0.1:19092 [--timeout 2] [--quiet]
"""
import argparse
import socket
import struct
import sys

API_METADATA = 3
VERSION = 4  # Kafka 4.x removed Metadata v0-v3 (KIP-896); v4 is the oldest left, not flexible.


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def array(self, item):
        n = self.take(">i")
        return [item() for _ in range(max(n, 0))]


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        out += chunk
    return bytes(out)


def metadata(host, port, timeout):
    client = b"lakesink-bed"
    header = struct.pack(">hhih", API_METADATA, VERSION, 1, len(client)) + client
    body = struct.pack(">ib", -1, 0)  # topics = null (all), allow_auto_topic_creation = false
    req = header + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        r = Reader(recv_exact(s, size))
    if r.take(">i") != 1:
        raise ValueError("correlation id mismatch")
    r.take(">i")  # throttle_time_ms
    brokers = r.array(lambda: (r.take(">i"), r.string(), r.take(">i"), r.string()))
    cluster_id = r.string()
    controller = r.take(">i")

    def partition():
        r.take(">h"), r.take(">i"), r.take(">i")
        r.array(lambda: r.take(">i"))
        r.array(lambda: r.take(">i"))

    def topic():
        err, name, internal = r.take(">h"), r.string(), r.take(">b")
        parts = r.array(partition)
        return name, err, bool(internal), len(parts)

    topics = r.array(topic)
    return brokers, cluster_id, controller, topics


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("address", help="HOST:PORT of a broker")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    host, _, port = a.address.rpartition(":")
    try:
        brokers, cluster_id, controller, topics = metadata(host, int(port), a.timeout)
    except (OSError, ValueError, struct.error) as e:
        print("kafka metadata request to %s failed: %s" % (a.address, e), file=sys.stderr)
        return 1
    if not brokers:
        print("kafka at %s answered with no brokers yet" % a.address, file=sys.stderr)
        return 1
    if not a.quiet:
        print("cluster %s, controller %d, brokers %s, %d topics (%d internal)" % (
            cluster_id, controller,
            ", ".join("%d@%s:%d" % (b[0], b[1], b[2]) for b in brokers),
            len(topics), sum(1 for t in topics if t[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
