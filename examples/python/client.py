"""A Switchboard client in plain Python: pyzmq + msgpack, following docs/PROTOCOL.md.

    python3 client.py [ENDPOINT]            run a few demo calls against the demo worker
    python3 client.py ENDPOINT --check      the same, asserting every result (used by the tests)

CURVE: set SWITCHBOARD_CURVE_SERVER_KEY and SWITCHBOARD_CURVE_KEY_FILE (see apply_curve).

Two ways to call:
- `call(...)` uses a REQ socket: one call at a time, the simplest possible client;
- `Pipeline` uses a DEALER socket: many calls in flight, replies matched by call id.
"""

import datetime
import itertools
import os
import sys

import msgpack
import zmq

SIGNATURE = b"SBC1"


def apply_curve(sock):
    """Turns on CURVE when SWITCHBOARD_CURVE_SERVER_KEY (the broker's public key, Z85) is set;
    SWITCHBOARD_CURVE_KEY_FILE names this peer's key pair file (`public-key = ...`, `secret-key = ...`)."""
    server_key = os.environ.get("SWITCHBOARD_CURVE_SERVER_KEY")
    if not server_key:
        return
    pair = {}
    with open(os.environ["SWITCHBOARD_CURVE_KEY_FILE"]) as f:
        for line in f:
            name, _, value = line.partition("=")
            if value:
                pair[name.strip()] = value.strip()
    sock.curve_serverkey = server_key.strip().encode()
    sock.curve_publickey = pair["public-key"].encode()
    sock.curve_secretkey = pair["secret-key"].encode()


class RemoteError(Exception):
    """A call ended in an error reply: `code` is from the protocol's vocabulary."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _timestamp(value):
    """msgpack `default`: a datetime travels as the MessagePack timestamp extension (a naive
    one is taken as local time), as Rust's Timestamp and the CLI's {"$timestamp": ...} do."""
    if isinstance(value, datetime.datetime):
        return msgpack.Timestamp.from_datetime(value.astimezone())
    raise TypeError(f"cannot send {type(value).__name__} values")


def pack_body(args, kwargs):
    """A request body {"args": [...], "kwargs": {...}}; datetimes become timestamps."""
    return msgpack.packb({"args": list(args), "kwargs": kwargs}, default=_timestamp)


def _request(function, call_id, args, kwargs, timeout_ms):
    header = msgpack.packb({"id": call_id, "timeout_ms": timeout_ms})
    return header, [SIGNATURE, function.encode(), header, pack_body(args, kwargs)]


def _outcome(body):
    reply = msgpack.unpackb(body, timestamp=3)
    if "error" in reply:
        raise RemoteError(reply["error"]["code"], reply["error"]["message"])
    return reply.get("result")


def call(endpoint, function, *args, timeout_ms=5000, **kwargs):
    """One call over a REQ socket. Returns the result or raises RemoteError / TimeoutError."""
    with zmq.Context.instance().socket(zmq.REQ) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        apply_curve(sock)
        sock.connect(endpoint)
        _, frames = _request(function, 1, args, kwargs, timeout_ms)
        sock.send_multipart(frames)
        if not sock.poll(timeout_ms + 250):
            raise TimeoutError(f"no reply from {function} within {timeout_ms} ms")
        _signature, _header, body = sock.recv_multipart()
        return _outcome(body)


class Pipeline:
    """Many calls in flight over one DEALER socket; replies are matched by call id."""

    def __init__(self, endpoint, timeout_ms=5000):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        apply_curve(self.sock)
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms
        self.ids = itertools.count(1)
        self.pending = set()

    def send(self, function, *args, **kwargs):
        """Sends a call without waiting; returns its call id."""
        call_id = next(self.ids)
        _, frames = _request(function, call_id, args, kwargs, self.timeout_ms)
        self.sock.send_multipart([b""] + frames)
        self.pending.add(call_id)
        return call_id

    def batch(self, calls):
        """Sends [(function, args, kwargs), ...] as one system.batch; returns its call id."""
        call_id = next(self.ids)
        frames = [b"", SIGNATURE, b"system.batch",
                  msgpack.packb({"id": call_id, "timeout_ms": self.timeout_ms})]
        for function, args, kwargs in calls:
            frames += [function.encode(), pack_body(args, kwargs)]
        self.sock.send_multipart(frames)
        self.pending.add(call_id)
        return call_id

    def collect(self):
        """Waits for every call sent; returns {call_id: result or RemoteError}."""
        results = {}
        while self.pending:
            if not self.sock.poll(self.timeout_ms + 250):
                raise TimeoutError(f"{len(self.pending)} calls got no reply")
            _empty, _signature, header, body = self.sock.recv_multipart()
            call_id = msgpack.unpackb(header)["id"]
            self.pending.discard(call_id)
            try:
                results[call_id] = _outcome(body)
            except RemoteError as error:
                results[call_id] = error
        return results

    def close(self):
        self.sock.close()


def main():
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"
    check = "--check" in sys.argv

    def show(label, value, expected=None):
        print(f"{label} -> {value!r}")
        if check and expected is not None:
            assert value == expected, f"{label}: expected {expected!r}, got {value!r}"

    show("add(2, 3)", call(endpoint, "add", 2, 3), 5)
    show("greet(name='ada')", call(endpoint, "greet", name="ada"), "hello, ada!")
    show("bytes.reverse(b'\\x00\\x01\\x02')", call(endpoint, "bytes.reverse", b"\x00\x01\x02"), b"\x02\x01\x00")
    start = datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc)
    show("time.shift(datetime, 1.5)", call(endpoint, "time.shift", start, 1.5),
         start + datetime.timedelta(seconds=1.5))
    try:
        call(endpoint, "add", 1)
        raise AssertionError("add(1) should fail")
    except RemoteError as error:
        show("add(1) raises", error.code, "BAD_ARGUMENTS")

    pipe = Pipeline(endpoint)
    ids = {pipe.send("add", i, i): i for i in range(200)}
    results = pipe.collect()
    show("200 pipelined adds all correct", all(results[c] == 2 * i for c, i in ids.items()), True)
    batch_id = pipe.batch([("add", [1, 2], {}), ("nope", [], {}), ("upper", ["x"], {})])
    batch = pipe.collect()[batch_id]
    show("batch slot 1", batch[0], {"result": 3})
    show("batch slot 2 code", batch[1]["error"]["code"], "UNKNOWN_FUNCTION")
    show("batch slot 3", batch[2], {"result": "X"})
    pipe.close()
    print("python client: ok")


if __name__ == "__main__":
    main()
