"""Is HTTP/2 worth it for pushes? The CPU each protocol costs a request, framing and parsing only.

What decides the rate on a small server is the CPU per push. On a kept-alive HTTP/1.1 connection a push
is one write and one small answer; HTTP/2 could carry many pushes in one TLS write, which would save part
of the system-call cost of a write (some 20 µs a push, py-spy in `make bench`, once a batch's
writes leave together), but only if its framing costs less than that. This measures both protocols'
client-side framing and parsing for one push, in memory (no sockets, no TLS):

- HTTP/1.1 as `workers/http1.py` does it: one buffer out, the answer parsed with httptools;
- HTTP/2 with `h2` (the library every Python HTTP/2 client builds on): HEADERS + DATA out with HPACK,
  the server's HEADERS frame parsed back, on one long-lived connection with streams reused.

    python -m bench.h2_cost [--requests 20000]
"""

from __future__ import annotations

import argparse
import os
import time

import httptools

HEADERS = {"TTL": "86400", "Urgency": "high", "Topic": "x" * 32, "Content-Encoding": "aes128gcm",
           "Content-Type": "application/octet-stream",
           "Authorization": "vapid t=" + "e" * 300 + ", k=" + "B" * 87}
BODY = os.urandom(400)
TARGET = "/fcm/send/" + "t" * 152


def http1(requests: int) -> float:
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /m\r\n\r\n"

    class Sink:
        status = 0

        def on_message_complete(self):
            self.status = parser.get_status_code()

    sink = Sink()
    parser = httptools.HttpResponseParser(sink)
    started = time.process_time()
    for _ in range(requests):
        head = [f"POST {TARGET} HTTP/1.1\r\nHost: fcm.googleapis.com\r\nContent-Length: {len(BODY)}\r\n"]
        for name, value in HEADERS.items():
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        _data = "".join(head).encode("latin-1") + BODY
        parser.feed_data(answer)
        assert sink.status == 201
    return (time.process_time() - started) / requests


def http2(requests: int) -> float:
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.data_to_send()
    headers = [(":method", "POST"), (":scheme", "https"), (":authority", "fcm.googleapis.com"), (":path", TARGET),
               *((name.lower(), value) for name, value in HEADERS.items()), ("content-length", str(len(BODY)))]
    client_time = 0.0
    for _ in range(requests):
        started = time.process_time()
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, headers)
        client.send_data(stream, BODY, end_stream=True)
        out = client.data_to_send()
        client_time += time.process_time() - started
        # The server's side is not ours to pay for; it is only here to answer.
        for event in server.receive_data(out):
            if isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(event, h2.events.StreamEnded):
                server.send_headers(event.stream_id, [(":status", "201")], end_stream=True)
        back = server.data_to_send()
        started = time.process_time()
        status = None
        for event in client.receive_data(back):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"]
        client.data_to_send()  # window updates
        client_time += time.process_time() - started
        assert status == b"201"
    return client_time / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    one = http1(args.requests)
    two = http2(args.requests)
    print(f"client CPU per push, framing and parsing only ({args.requests} requests):")
    print(f"  HTTP/1.1 (workers/http1.py, httptools): {one * 1e6:6.1f} µs")
    print(f"  HTTP/2   (h2):                          {two * 1e6:6.1f} µs  ({two / one:.1f}×)")


if __name__ == "__main__":
    main()
