"""Bytes and rules without a broker: golden vectors, the session's contract, errors."""

import base64
import datetime
import json
from pathlib import Path

import msgpack
import pytest

from switchboard_rpc import _wire, errors
from switchboard_rpc._session import Call, Session

GOLDEN = Path(__file__).resolve().parents[2] / "protocol" / "testdata" / "golden.json"


def from_json(value):
    """A golden vector's value in Python terms: {"$bin"} is bytes, {"$timestamp"} a datetime."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$bin"]:
            return base64.b64decode(value["$bin"])
        if list(value) == ["$timestamp"]:
            return datetime.datetime.fromisoformat(value["$timestamp"].replace("Z", "+00:00"))
        return {k: from_json(v) for k, v in value.items()}
    return value


def test_golden_vectors_decode_and_encode_identically():
    vectors = json.loads(GOLDEN.read_text())
    assert len(vectors) >= 10
    for vector in vectors:
        value = from_json(vector["value"])
        assert _wire.packb(value).hex() == vector["hex"], vector["name"]
        assert _wire.unpackb(bytes.fromhex(vector["hex"])) == value, vector["name"]


def test_request_header_and_worker_frames():
    assert _wire.header(1, 5000) == bytes.fromhex("82a2696401aa74696d656f75745f6d73cd1388")
    assert _wire.request_body([2, 3], {}) == bytes.fromhex("82a461726773920203a66b776172677380")
    control = bytes.fromhex("5342573208" "0000000000000001" "0000000000000009" "00000064" "0166" "0100")
    [call] = _wire.parse_request(control, [b"\x80"])
    assert (call.ticket, call.call_id, call.time_left_ms, call.function, call.attempt, call.traceparent) == \
        (b"\0" * 7 + b"\1", 9, 100, "f", 1, None)
    for broken in (control[:-1], control + b"\0"):
        with pytest.raises(ValueError):
            _wire.parse_request(broken, [b"\x80"])
    with pytest.raises(ValueError):
        _wire.parse_request(control, [b"\x80", b"\x80"])
    assert _wire.reply_message([b"T" * 8], [b"B"]) == [b"SBW2\x03" + b"T" * 8, b"B"]
    # REQUEST with caller: context, then caller length, caller, flags.
    with_caller = bytes.fromhex("5342573209" "0000000000000001" "0000000000000009" "00000064" "0166"
                                "0200" "09") + b"curve:abc" + b"\x01"
    [call] = _wire.parse_request(with_caller, [b"\x80"])
    assert (call.attempt, call.caller, call.flags) == (2, "curve:abc", _wire.FLAG_REPORT_RUN_TIME)
    for cut in (1, 2):
        with pytest.raises(ValueError):
            _wire.parse_request(with_caller[:-cut], [b"\x80"])
    reply = _wire.append_run_time(_wire.packb({"result": 5}), 1234)
    assert _wire.unpackb(reply) == {"result": 5, "run_us": 1234}


def test_every_code_has_its_class_and_unknown_codes_survive():
    for code, cls in errors.BY_CODE.items():
        error = errors.from_wire(code, "m")
        assert type(error) is cls and error.code == code and str(error) == f"{code}: m"
    assert not errors.from_wire("OVERLOADED", "").may_have_run
    assert errors.from_wire("WORKER_LOST", "").may_have_run
    novel = errors.from_wire("SOMETHING_NEW", "m")
    assert isinstance(novel, errors.UnrecognizedError) and novel.code == "SOMETHING_NEW"


def reply(call_id, body):
    return [b"", b"SBC1", msgpack.packb({"id": call_id}), msgpack.packb(body)]


class Outcomes:
    def __init__(self):
        self.got = {}

    def settle_for(self, call_id):
        return lambda result, error, timings: self.got.__setitem__(call_id, (result, error))


def new_call(outcomes, call_id, now, idempotent=False, timeout=5.0):
    return Call(call_id, [b"f", msgpack.packb({"id": call_id}), b"\x80"], timeout, idempotent,
                outcomes.settle_for(call_id), now, "f")


def test_session_sends_nothing_until_the_link_is_up_then_pipelines():
    outcomes, session = Outcomes(), Session("tcp://x")
    for call_id in range(1, 4):
        session.add(new_call(outcomes, call_id, 0.0))
    assert session.next_message() is None
    session.on_link_up()
    frames, calls = session.next_message()
    assert len(calls) == 3 and frames[:2] == [b"", b"SBC1"] and len(frames) == 2 + 9
    session.sent(calls)
    session.on_message([b"", b"SBC1", msgpack.packb({"id": 2}), msgpack.packb({"result": 7}),
                        msgpack.packb({"id": 1}), msgpack.packb({"error": {"code": "OVERLOADED", "message": "m"}})], 0.1)
    assert outcomes.got[2] == (7, None)
    assert isinstance(outcomes.got[1][1], errors.Overloaded)
    session.on_message(reply(99, {"result": 1}), 0.1)
    assert session.unmatched_replies == 1


def test_session_link_drop_fails_plain_calls_and_resends_idempotent_ones():
    outcomes, session = Outcomes(), Session("tcp://x")
    session.on_link_up()
    session.add(new_call(outcomes, 1, 0.0))
    session.add(new_call(outcomes, 2, 0.0, idempotent=True))
    session.sent(session.next_message()[1])
    session.on_link_down(None, 1.0)
    assert isinstance(outcomes.got[1][1], errors.BrokerLost)
    assert 2 not in outcomes.got and session.resent == 1
    assert session.next_message() is None  # not before a new connection is up
    session.on_link_up()
    frames, calls = session.next_message()
    assert [c.id for c in calls] == [2]
    session.sent(calls)
    # A restarted broker whose workers are not back yet: the idempotent call waits and retries.
    session.on_message(reply(2, {"error": {"code": "UNKNOWN_FUNCTION", "message": "m"}}), 1.1)
    assert 2 not in outcomes.got
    session.on_time(1.1 + session.retry_pause)
    session.sent(session.next_message()[1])
    session.on_message(reply(2, {"result": "ok"}), 1.3)
    assert outcomes.got[2] == ("ok", None)


def test_session_every_call_ends_by_its_deadline():
    outcomes, session = Outcomes(), Session("tcp://x")
    session.add(new_call(outcomes, 1, 0.0, timeout=1.0))
    session.on_time(0.5)
    assert outcomes.got == {}
    session.on_time(1.0)
    assert isinstance(outcomes.got[1][1], errors.BrokerLost)
    assert "no connection to the broker at tcp://x came up" in outcomes.got[1][1].message
    session.on_link_up()
    session.add(new_call(outcomes, 2, 2.0, timeout=1.0))
    session.sent(session.next_message()[1])
    assert session.next_wakeup() == 3.0
    session.on_time(3.0)
    assert 2 not in outcomes.got  # the broker has a grace to answer TIMEOUT itself
    session.on_time(3.0 + 0.25)
    assert isinstance(outcomes.got[2][1], errors.Timeout)
    assert not session.busy()


def test_a_host_name_with_several_addresses_stands_for_one_broker_each(monkeypatch):
    import socket as socket_module

    def getaddrinfo(host, port, *args, **kwargs):
        table = {"tier": ["10.0.0.2", "10.0.0.1", "10.0.0.2"], "one": ["10.0.0.9"], "v6": ["fd00::1", "fd00::2"]}
        if host not in table:
            raise socket_module.gaierror("unknown")
        return [(socket_module.AF_INET, socket_module.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]

    monkeypatch.setattr(_wire.socket, "getaddrinfo", getaddrinfo)
    assert _wire.expand_endpoints("tcp://tier:5555, tcp://one:5555,tcp://gone:1, ipc:///x, tcp://10.0.0.1:5555") == [
        "tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555",   # several addresses: one broker each
        "tcp://one:5555",                                # one address: left to ZeroMQ
        "tcp://gone:1",                                  # not resolving (yet): left to ZeroMQ
        "ipc:///x",
    ]
    assert _wire.expand_endpoints("tcp://v6:7") == ["tcp://[fd00::1]:7", "tcp://[fd00::2]:7"]


def test_capacity_is_split_as_the_rust_worker_splits_it():
    # The same cases as worker/src/credit.rs.
    active = lambda held, backlog: ("active", held, backlog)  # noqa: E731
    assert _wire.split_capacity(8, [active(0, 0)] * 3) == [3, 3, 2]
    assert _wire.split_capacity(8, [active(2, 500), active(0, 0), active(0, 0)]) == [8, 1, 1]
    assert _wire.split_capacity(12, [active(4, 4), active(4, 4), active(0, 0)]) == [6, 6, 1]
    assert _wire.split_capacity(8, [("reserved", 3, 0), active(0, 10), active(0, 10)]) == [None, 3, 2]
    assert _wire.split_capacity(2, [("reserved", 2, 0), active(0, 5), active(0, 0)]) == [None, 1, 1]
    assert _wire.split_capacity(8, [("reserved", 8, 0)]) == [None]
    assert _wire.parse_load(b"SBW2\x0a\x00\x01\x11\x70\x01") == (70_000, True)
    assert _wire.capacity_message(7, 2) == [b"SBW2\x0b\x00\x00\x00\x07\x00\x00\x00\x02"]


def test_tier_unknown_function_from_one_broker_tries_the_other_once_then_fails():
    from switchboard_rpc._session import Tier
    outcomes, tier = Outcomes(), Tier(["tcp://a", "tcp://b"])
    for session in tier.sessions:
        session.on_link_up()
    first = tier.sessions[0]
    first.add(new_call(outcomes, 9, 0.0))
    first.sent(first.next_message()[1])
    unknown = {"error": {"code": "UNKNOWN_FUNCTION", "message": "no worker hosts 'f'"}}
    # The first broker lost its workers: the call never ran there; the other one may run it.
    first.on_message(reply(9, unknown), 0.1)
    assert 9 not in outcomes.got and not first.accepting()
    tier.move_stranded()
    second = tier.sessions[1]
    assert (first.load(), second.load()) == (0, 1)
    second.sent(second.next_message()[1])
    # No broker hosts it: the caller hears UNKNOWN_FUNCTION once each broker said so.
    second.on_message(reply(9, unknown), 0.2)
    assert isinstance(outcomes.got[9][1], errors.UnknownFunction)


def test_a_name_that_does_not_resolve_is_kept_as_written_or_reported_when_followed():
    listed = "tcp://127.0.0.1:1, tcp://no-such-host.invalid:2"
    assert _wire.expand_endpoints(listed) == ["tcp://127.0.0.1:1", "tcp://no-such-host.invalid:2"]
    assert _wire.expand_endpoints_strictly(listed) is None
    assert _wire.expand_endpoints_strictly("tcp://127.0.0.1:1, ipc:///x") == ["tcp://127.0.0.1:1", "ipc:///x"]
