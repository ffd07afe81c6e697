"""Speaks SBC1/SBW2 using only pyzmq and msgpack, following docs/PROTOCOL.md.

Usage: wire_check.py FRONTEND BACKEND
Calls the Rust demo worker's `add` from a REQ socket, then hosts `double`
in a Python worker and calls it. Exits non-zero with a message on any mismatch.
"""

import struct
import sys
import threading

import msgpack
import zmq


def calls(control, bodies):
    """Yields (ticket, function, body) for each call of a REQUEST (PROTOCOL.md 5.2)."""
    at = 5
    for body in bodies:
        ticket = control[at:at + 8]
        _call_id, _time_left_ms, name_len = struct.unpack_from(">QIB", control, at + 8)
        function = control[at + 21:at + 21 + name_len].decode()
        at += 21 + name_len
        yield ticket, function, body
    assert at == len(control), "a record without a body"


def python_worker(ctx, backend, stop):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(backend)
    ready = {"capacity": 1, "heartbeat_ms": 1000,
             "functions": [{"name": "double", "doc": "Doubles x.", "signature": "double(x)"}]}
    sock.send_multipart([b"SBW2\x01", msgpack.packb(ready)])
    while not stop.is_set():
        if not sock.poll(100):
            sock.send_multipart([b"SBW2\x04"])
            continue
        control, *bodies = sock.recv_multipart()
        assert control[:4] == b"SBW2", control
        if control[4] == 0x02:
            for ticket, function, body in calls(control, bodies):
                assert function == "double", function
                args = msgpack.unpackb(body).get("args") or []
                sock.send_multipart([b"SBW2\x03" + ticket, msgpack.packb({"result": args[0] * 2})])
        elif control[4] == 0x05:
            sock.send_multipart([b"SBW2\x01", msgpack.packb(ready)])
    sock.close()


def call(sock, call_id, function, args):
    header = msgpack.packb({"id": call_id, "timeout_ms": 5000})
    sock.send_multipart([b"SBC1", function, header, msgpack.packb({"args": args, "kwargs": {}})])
    signature, echoed, body = sock.recv_multipart()
    assert signature == b"SBC1", signature
    assert echoed == header, (echoed, header)
    return msgpack.unpackb(body)


def main():
    frontend, backend = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.connect(frontend)

    reply = call(req, 1, b"add", [2, 3])
    assert reply == {"result": 5}, reply
    reply = call(req, 2, b"nope", [])
    assert reply["error"]["code"] == "UNKNOWN_FUNCTION", reply

    stop = threading.Event()
    worker = threading.Thread(target=python_worker, args=(ctx, backend, stop))
    worker.start()
    try:
        for attempt in range(200):
            reply = call(req, 10 + attempt, b"double", [21])
            if "result" in reply:
                break
            assert reply["error"]["code"] == "UNKNOWN_FUNCTION", reply
            stop.wait(0.02)
        assert reply == {"result": 42}, reply
    finally:
        stop.set()
        worker.join()
    req.close()
    ctx.term()
    print("python wire check: ok")


if __name__ == "__main__":
    main()
