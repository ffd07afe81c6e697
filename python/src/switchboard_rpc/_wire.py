"""The bytes of docs/PROTOCOL.md: MessagePack values, client frames, worker control frames.

Nothing here touches a socket. Types both ways: `bytes` is bin, a timezone-aware
`datetime` is the timestamp extension (a naive one is refused: its instant is unknown),
and everything else is as `msgpack` maps it.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import struct
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import msgpack

from .errors import BadRequest, RemoteError, from_wire

CLIENT_SIGNATURE = b"SBC1"
WORKER_SIGNATURE = b"SBW2"
(READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT, CANCEL, DRAIN, REQUEST_WITH_CONTEXT,
 REQUEST_WITH_CALLER) = (WORKER_SIGNATURE + bytes([command]) for command in range(1, 10))
#: LOAD (broker -> worker: its backlog, and whether it is stopping) and CAPACITY (worker ->
#: broker: new budgets), PROTOCOL.md 5.8.
LOAD, CAPACITY = WORKER_SIGNATURE + b"\x0a", WORKER_SIGNATURE + b"\x0b"
#: LOAD flag: the broker is stopping.
LOAD_STOPPING = 0x01
#: Flag of a REQUEST-with-caller record: add the function's run time ("run_us") to the reply.
FLAG_REPORT_RUN_TIME = 0x01

#: Calls in one pipelined client message, or one worker REQUEST/REPLY (PROTOCOL.md 6).
MAX_CALLS_PER_MESSAGE = 256
#: Calls in one batch.
MAX_BATCH_CALLS = 1000
#: Largest reply body a worker may send (PROTOCOL.md 6).
MAX_REPLY_BYTES = 32 * 1024 * 1024
#: Longest function name, in bytes.
MAX_NAME_BYTES = 255


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TypeError(
                "cannot send a naive datetime (no timezone, so no known instant): "
                "give it a tzinfo, e.g. datetime.now(timezone.utc)"
            )
        return msgpack.Timestamp.from_datetime(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot send a value of type {type(value).__name__} (no MessagePack form)")


def packb(value: Any) -> bytes:
    """MessagePack bytes of a value; raises TypeError for values with no MessagePack form."""
    return msgpack.packb(value, default=_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """The value of MessagePack bytes: timestamps as aware UTC datetimes, bin as bytes."""
    return msgpack.unpackb(data, timestamp=3, raw=False, strict_map_key=False)


def check_name(function: str) -> bytes:
    """A function name as it travels: UTF-8, 1-255 bytes, no control characters."""
    if not isinstance(function, str):
        raise TypeError(f"a function name is a str, not {type(function).__name__}")
    encoded = function.encode()
    if not 0 < len(encoded) <= MAX_NAME_BYTES or any(ord(c) < 32 or ord(c) == 127 for c in function):
        raise ValueError(
            f"invalid function name {function!r}: 1-255 bytes of UTF-8 without control characters"
        )
    return encoded


def request_body(args: Sequence[Any], kwargs: Dict[str, Any]) -> bytes:
    """A request body (4.4)."""
    return packb({"args": list(args), "kwargs": kwargs})


def header(call_id: int, timeout_ms: int, traceparent: Optional[str] = None, timings: bool = False,
           wait_for_ready: bool = False, notices: bool = False) -> bytes:
    """A request header (4.3)."""
    fields: Dict[str, Any] = {"id": call_id, "timeout_ms": timeout_ms}
    if notices:
        fields["notices"] = True
    if traceparent:
        fields["traceparent"] = traceparent
    if timings:
        fields["timings"] = True
    if wait_for_ready:
        fields["wait_for_ready"] = True
    return packb(fields)


def reply_outcome(body: bytes) -> Tuple[Any, Optional[RemoteError], Optional[Dict[str, Any]]]:
    """A reply body (4.5) as (result, error, timings); exactly one of result/error is set."""
    try:
        reply = unpackb(body)
    except Exception as error:  # noqa: BLE001 - any undecodable reply is the same failure
        return None, BadRequest(f"the reply body does not decode: {error}"), None
    if not isinstance(reply, dict):
        return None, BadRequest("the reply body is not a map"), None
    timings = reply.get("timings")
    if isinstance(timings, dict) and "run_us" in reply:
        timings = {**timings, "run_us": reply["run_us"]}
    return (*outcome_of(reply), timings)


def outcome_of(reply: Dict[str, Any]) -> Tuple[Any, Optional[RemoteError]]:
    """A decoded reply map as (result, error)."""
    error = reply.get("error")
    if error is None:
        return reply.get("result"), None
    if isinstance(error, dict):
        return None, from_wire(str(error.get("code", "")), str(error.get("message", "")))
    return None, BadRequest(f"malformed error in reply: {error!r}")


def split_replies(frames: List[bytes]) -> Iterator[Tuple[bytes, bytes]]:
    """(header, body) of each reply in a message from the broker (DEALER form: a single
    reply or a group, 4.2 and 4.9). Raises ValueError for another shape."""
    if len(frames) < 4 or frames[0] != b"" or frames[1] != CLIENT_SIGNATURE or len(frames) % 2:
        raise ValueError(f"malformed reply message of {len(frames)} frames")
    for at in range(2, len(frames), 2):
        yield frames[at], frames[at + 1]


def notice(frames: List[bytes]) -> Optional[str]:
    """The name of the notice a message from the broker carries (4.11: `"stopping"`), or
    None when it is not a NOTICE."""
    if len(frames) != 4 or frames[0] != b"" or frames[1] != CLIENT_SIGNATURE or frames[2] != b"":
        return None
    try:
        body = unpackb(frames[3])
    except Exception:  # noqa: BLE001
        return None
    name = body.get("notice") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def reply_id(header_frame: bytes) -> Optional[int]:
    """The call id in an echoed header, or None."""
    try:
        fields = unpackb(header_frame)
    except Exception:  # noqa: BLE001
        return None
    if isinstance(fields, dict) and isinstance(fields.get("id"), int):
        return fields["id"]
    return None


# ---- worker side ----


class WorkerCall:
    """One call of a REQUEST (5.2)."""

    __slots__ = ("ticket", "call_id", "time_left_ms", "function", "attempt", "traceparent", "body",
                 "caller", "flags")

    def __init__(self, ticket: bytes, call_id: int, time_left_ms: int, function: str,
                 attempt: int, traceparent: Optional[str], body: bytes,
                 caller: Optional[str] = None, flags: int = 0) -> None:
        self.ticket = ticket
        self.call_id = call_id
        self.time_left_ms = time_left_ms
        self.function = function
        self.attempt = attempt
        self.traceparent = traceparent
        self.body = body
        self.caller = caller
        self.flags = flags


_RECORD = struct.Struct(">8sQIB")


def parse_request(control: bytes, bodies: List[bytes]) -> List[WorkerCall]:
    """The calls of a REQUEST, REQUEST-with-context or REQUEST-with-caller message;
    ValueError if malformed."""
    with_caller = control[:5] == REQUEST_WITH_CALLER
    with_context = with_caller or control[:5] == REQUEST_WITH_CONTEXT
    at, calls = 5, []
    while at < len(control):
        if at + _RECORD.size > len(control):
            raise ValueError("REQUEST record cut short")
        ticket, call_id, time_left_ms, name_len = _RECORD.unpack_from(control, at)
        at += _RECORD.size
        name = control[at:at + name_len]
        if len(name) != name_len or name_len == 0:
            raise ValueError("REQUEST function name cut short")
        at += name_len
        attempt, traceparent = 1, None
        if with_context:
            if at + 2 > len(control):
                raise ValueError("REQUEST context cut short")
            attempt, trace_len = control[at], control[at + 1]
            trace = control[at + 2:at + 2 + trace_len]
            if len(trace) != trace_len:
                raise ValueError("REQUEST traceparent cut short")
            at += 2 + trace_len
            traceparent = trace.decode("ascii", "replace") or None
        caller, flags = None, 0
        if with_caller:
            if at + 1 > len(control):
                raise ValueError("REQUEST caller cut short")
            caller_len = control[at]
            who = control[at + 1:at + 1 + caller_len]
            if len(who) != caller_len or at + 1 + caller_len >= len(control):
                raise ValueError("REQUEST caller or flags cut short")
            flags = control[at + 1 + caller_len]
            at += 2 + caller_len
            caller = who.decode("utf-8", "replace") or None
        if len(calls) >= len(bodies):
            raise ValueError("REQUEST has more records than bodies")
        calls.append(WorkerCall(ticket, call_id, time_left_ms, name.decode("utf-8", "replace"),
                                attempt, traceparent, bodies[len(calls)], caller, flags))
    if not calls or len(calls) != len(bodies) or len(calls) > MAX_CALLS_PER_MESSAGE:
        raise ValueError(f"REQUEST with {len(calls)} records and {len(bodies)} bodies")
    return calls


def parse_tickets(control: bytes) -> List[bytes]:
    """The 8-byte tickets after the command byte (CANCEL); ValueError if malformed."""
    rest = control[5:]
    if not rest or len(rest) % 8:
        raise ValueError("ticket list of a wrong length")
    return [rest[at:at + 8] for at in range(0, len(rest), 8)]


def parse_load(control: bytes) -> Tuple[int, bool]:
    """A LOAD control frame as (backlog, stopping). Raises ValueError for another shape."""
    if len(control) != 10 or control[:5] != LOAD:
        raise ValueError("LOAD carries a 4-byte count and a flags byte")
    backlog, flags = struct.unpack(">IB", control[5:])
    return backlog, bool(flags & LOAD_STOPPING)


def capacity_message(capacity: int, inline_capacity: int) -> List[bytes]:
    """A CAPACITY message: the worker's new budgets with one broker."""
    return [CAPACITY + struct.pack(">II", capacity, inline_capacity)]


def split_capacity(total: int, demands: List[Tuple[str, int, int]]) -> List[Optional[int]]:
    """Each broker's share of `total` slots, as the Rust worker splits (worker/src/credit.rs):
    `("active", held, backlog)` for a broker that moves capacity gets a share in proportion to
    held + backlog + 1 (at least 1) of what the `("reserved", slots, 0)` ones do not keep;
    a reserved one gets None (it keeps what it has)."""
    reserved = sum(slots for kind, slots, _ in demands if kind == "reserved")
    available = max(0, total - reserved)
    weights = [held + backlog + 1 if kind == "active" else 0 for kind, held, backlog in demands]
    total_weight = sum(weights)
    if total_weight == 0:
        return [None] * len(demands)
    floors = [available * w // total_weight for w in weights]
    rests = [available * w % total_weight for w in weights]
    left = available - sum(floors)
    order = sorted((i for i, w in enumerate(weights) if w), key=lambda i: -rests[i])
    for i in order[:left]:
        floors[i] += 1
    return [max(1, floors[i]) if weights[i] else None for i in range(len(demands))]


def reply_message(tickets: List[bytes], bodies: List[bytes]) -> List[bytes]:
    """A REPLY (5.3) answering the calls with these tickets."""
    return [REPLY + b"".join(tickets), *bodies]


def append_run_time(body: bytes, run_us: int) -> bytes:
    """Adds `"run_us": n` to a reply body (a small map: its entry count goes up by one and
    the entry is appended), as the Rust worker does; other bodies are left alone."""
    if not body or not 0x80 <= body[0] <= 0x8E:
        return body
    return bytes([body[0] + 1]) + body[1:] + b"\xa6run_us" + packb(run_us)


def error_body(code: str, message: str) -> bytes:
    """An error reply body."""
    return packb({"error": {"code": code, "message": message}})


def endpoint_list(endpoints: str) -> List[str]:
    """The endpoints a comma-separated list names, in order, without blanks or repeats."""
    found: List[str] = []
    for endpoint in (e.strip() for e in endpoints.split(",")):
        if endpoint and endpoint not in found:
            found.append(endpoint)
    return found


def expand_endpoints(endpoints: str) -> List[str]:
    """The endpoints a comma-separated list names; a host name that resolves to several
    addresses stands for one broker each (one with a single address, or that does not resolve,
    stays as written: ZeroMQ looks it up again when it reconnects)."""
    found = _expand(endpoints, strict=False)
    assert found is not None
    return found


def expand_endpoints_strictly(endpoints: str) -> Optional[List[str]]:
    """`expand_endpoints`, or None when a host name in the list does not resolve now (a DNS
    outage must not make a client or worker drop the brokers it follows)."""
    return _expand(endpoints, strict=True)


def _expand(endpoints: str, strict: bool) -> Optional[List[str]]:
    found: List[str] = []
    for each in endpoint_list(endpoints):
        addresses = _addresses(each, strict)
        if addresses is None:
            return None
        for endpoint in addresses:
            if endpoint not in found:
                found.append(endpoint)
    return found


def names_a_host(endpoints: str) -> bool:
    """Whether a comma-separated list names a host (what it stands for may then change)."""
    return any(_host_and_port(e) is not None for e in endpoint_list(endpoints))


def _host_and_port(endpoint: str) -> Optional[Tuple[str, int]]:
    """(host name, port) of `tcp://name:port` when `name` is a host name, not an address."""
    if not endpoint.startswith("tcp://") or ":" not in endpoint[6:]:
        return None
    host, _, port = endpoint[6:].rpartition(":")
    if not port.isdigit() or host in ("", "*") or host.startswith("[") or ";" in host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host, int(port)


def _addresses(endpoint: str, strict: bool = False) -> Optional[List[str]]:
    """`tcp://name:port` as one endpoint per address of `name` when it has several; with
    `strict`, None when `name` does not resolve."""
    named = _host_and_port(endpoint)
    if named is None:
        return [endpoint]
    host, port = named
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None if strict else [endpoint]
    addresses = sorted({info[4][0] for info in infos})
    if len(addresses) < 2:
        return [endpoint]
    return [f"tcp://[{a}]:{port}" if ":" in a else f"tcp://{a}:{port}" for a in addresses]
