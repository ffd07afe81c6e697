"""A Switchboard worker in plain Python: pyzmq + msgpack, following docs/PROTOCOL.md.

    python3 worker.py [BACKEND_ENDPOINT]

CURVE: set SWITCHBOARD_CURVE_SERVER_KEY and SWITCHBOARD_CURVE_KEY_FILE (see apply_curve).
Hosts py.double, py.concat, py.divide, py.sleep and py.now. Calls run on a thread pool while
the socket loop keeps heartbeating; exceptions become error replies (TypeError:
BAD_ARGUMENTS, anything else: FUNCTION_ERROR) and the worker keeps serving. SIGTERM or
SIGINT: leave gracefully (DISCONNECT, finish running calls, wait for the broker's ack).
"""

import concurrent.futures
import datetime
import inspect
import os
import queue
import signal
import struct
import sys
import threading
import time

import msgpack
import zmq

# Every message starts with a control frame: signature, command byte, the command's fields.
READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT = (b"SBW2" + bytes([c]) for c in range(1, 6))


def calls(control, bodies):
    """Yields (ticket, function, time_left_ms, body) for each call of a REQUEST (PROTOCOL.md 5.2).
    Each record: ticket (8 bytes), call id (8), time left in ms (4), name length (1), name."""
    at = len(REQUEST)
    for body in bodies:
        ticket = control[at:at + 8]
        _call_id, time_left_ms, name_len = struct.unpack_from(">QIB", control, at + 8)
        function = control[at + 21:at + 21 + name_len].decode()
        at += 21 + name_len
        yield ticket, function, time_left_ms, body


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


def _timestamp(value):
    """msgpack `default`: a datetime result travels as the MessagePack timestamp extension
    (a naive one is taken as local time)."""
    if isinstance(value, datetime.datetime):
        return msgpack.Timestamp.from_datetime(value.astimezone())
    raise TypeError(f"cannot send {type(value).__name__} values")


class Worker:
    def __init__(self, endpoint, functions, threads=4, heartbeat_ms=1000):
        self.endpoint = endpoint
        # The name operators see in `system.workers` and health checks, as the Rust worker.
        self.name = (os.environ.get("SWITCHBOARD_WORKER_NAME") or os.environ.get("HOSTNAME")
                     or f"python-worker-{os.getpid()}")
        self.functions = functions
        self.threads = threads
        self.heartbeat = heartbeat_ms / 1000
        self.done = queue.Queue()
        self.stopping = threading.Event()

    def ready_body(self):
        described = []
        for name, fn in self.functions.items():
            doc = (inspect.getdoc(fn) or "").splitlines()
            described.append({"name": name, "doc": doc[0] if doc else "",
                              "signature": f"{name}{inspect.signature(fn)}"})
        return msgpack.packb({"capacity": self.threads,
                              "heartbeat_ms": int(self.heartbeat * 1000),
                              "functions": described,
                              "name": self.name})

    def run_call(self, ticket, function, deadline, body):
        fn = self.functions.get(function)
        if fn is None:
            return ticket, {"error": {"code": "UNKNOWN_FUNCTION", "message": f"no function {function}"}}
        try:
            request = msgpack.unpackb(body, timestamp=3)
            args, kwargs = request.get("args") or [], request.get("kwargs") or {}
        except Exception as error:  # noqa: BLE001 - any decode failure is the caller's
            return ticket, {"error": {"code": "BAD_REQUEST", "message": f"{function}: {error}"}}
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as error:
            return ticket, {"error": {"code": "BAD_ARGUMENTS", "message": f"{function}: {error}"}}
        if time.monotonic() >= deadline:
            return ticket, {"error": {"code": "TIMEOUT", "message": f"{function}: deadline passed"}}
        try:
            return ticket, {"result": fn(*args, **kwargs)}
        except Exception as error:  # noqa: BLE001 - every failure goes back to the caller
            return ticket, {"error": {"code": "FUNCTION_ERROR", "message": str(error)}}

    def serve(self):
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 1000)
        apply_curve(sock)
        sock.connect(self.endpoint)
        sock.send_multipart([READY, self.ready_body()])
        pool = concurrent.futures.ThreadPoolExecutor(self.threads)
        held, acknowledged, leaving_since = 0, False, None
        next_heartbeat = time.monotonic() + self.heartbeat
        broker_expires = time.monotonic() + 3 * self.heartbeat
        while True:
            if self.stopping.is_set() and leaving_since is None:
                sock.send_multipart([DISCONNECT])
                leaving_since = time.monotonic()
            if leaving_since is not None and held == 0 and (acknowledged or time.monotonic() > broker_expires):
                break
            if leaving_since is not None and time.monotonic() - leaving_since > 10:
                break
            if sock.poll(50):
                while sock.poll(0):
                    control, *bodies = sock.recv_multipart()
                    received = time.monotonic()
                    broker_expires = received + 3 * self.heartbeat
                    if control.startswith(REQUEST):
                        for ticket, function, time_left_ms, body in calls(control, bodies):
                            held += 1
                            deadline = received + time_left_ms / 1000
                            future = pool.submit(self.run_call, ticket, function, deadline, body)
                            future.add_done_callback(lambda f: self.done.put(f.result()))
                    elif control == DISCONNECT:
                        if leaving_since is not None:
                            acknowledged = True
                        else:
                            sock.send_multipart([READY, self.ready_body()])
            tickets, replies = [], []
            while not self.done.empty() and len(tickets) < 256:
                ticket, reply = self.done.get()
                tickets.append(ticket)
                replies.append(msgpack.packb(reply, default=_timestamp))
            if tickets:  # one REPLY carries every finished call: its tickets, then the bodies
                sock.send_multipart([REPLY + b"".join(tickets), *replies])
                held -= len(tickets)
            if time.monotonic() >= next_heartbeat:
                sock.send_multipart([HEARTBEAT])
                next_heartbeat = time.monotonic() + self.heartbeat
        pool.shutdown()
        sock.close()


def double(x):
    """Doubles a number."""
    return x * 2


def concat(first, second, sep=" "):
    """Joins two strings with a separator (keyword arguments welcome)."""
    return f"{first}{sep}{second}"


def divide(a, b):
    """Divides a by b; dividing by zero fails."""
    return a / b


def sleep(seconds):
    """Sleeps, then returns the seconds slept."""
    time.sleep(seconds)
    return seconds


def now():
    """The worker's current time, as a MessagePack timestamp."""
    return datetime.datetime.now(datetime.timezone.utc)


def main():
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5556"
    worker = Worker(endpoint, {"py.double": double, "py.concat": concat, "py.divide": divide,
                               "py.sleep": sleep, "py.now": now})
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    print("python worker: serving", flush=True)
    worker.serve()
    print("python worker: stopped", flush=True)


if __name__ == "__main__":
    main()
