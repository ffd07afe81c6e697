"""CURVE: the Python client and worker with keys made by the Rust `client keygen`."""

import pytest

from switchboard_rpc import BrokerLost, Client, Curve, CurveError


def keygen(cluster, directory, name):
    done = cluster.run_rust_client("keygen", str(directory / name))
    assert done.returncode == 0, done.stderr
    return directory / f"{name}.key", directory / f"{name}.pub"


@pytest.fixture
def curve_broker(cluster, tmp_path):
    broker_key, broker_pub = keygen(cluster, tmp_path, "broker")
    client_key, client_pub = keygen(cluster, tmp_path, "client")
    worker_key, worker_pub = keygen(cluster, tmp_path, "worker")
    keygen(cluster, tmp_path, "stranger")
    broker = cluster.broker("--curve-key-file", str(broker_key), "--client-keys-file", str(client_pub),
                            "--worker-keys-file", str(worker_pub))
    server_key = broker_pub.read_text().strip()
    return broker, server_key, tmp_path


def test_listed_python_client_and_worker_talk_over_curve(cluster, curve_broker):
    broker, server_key, keys = curve_broker
    cluster.python_worker(broker.backend, "py-curve", env={
        "SWITCHBOARD_CURVE_SERVER_KEY": server_key,
        "SWITCHBOARD_CURVE_KEY_FILE": str(keys / "worker.key"),
    })
    curve = Curve.from_files(server_key, str(keys / "client.key"))
    broker.wait_for_workers("py.double", 1, curve=curve)
    with Client(broker.frontend, timeout=5, curve=curve) as client:
        assert client.py.double(4) == 8
        client_public = (keys / "client.pub").read_text().strip()
        assert client.py.context()["caller"] == f"curve:{client_public}"
    env = {"SWITCHBOARD_CURVE_SERVER_KEY_FILE": str(keys / "broker.pub"),
           "SWITCHBOARD_CURVE_KEY_FILE": str(keys / "client.key")}
    assert Curve.from_env(env) == curve


def test_unlisted_and_plain_clients_are_refused_with_a_reason(curve_broker):
    broker, server_key, keys = curve_broker
    stranger = Curve.from_files(server_key, str(keys / "stranger.key"))
    with Client(broker.frontend, timeout=1, curve=stranger) as client:
        with pytest.raises(BrokerLost, match="refused this client's CURVE key"):
            client.ping()
    with Client(broker.frontend, timeout=1, curve=False) as client:
        with pytest.raises(BrokerLost, match="no connection to the broker"):
            client.ping()


def test_bad_curve_settings_are_clear_errors(tmp_path):
    with pytest.raises(CurveError, match="cannot read CURVE key file"):
        Curve.from_files("x" * 40, str(tmp_path / "missing.key"))
    (tmp_path / "half.key").write_text("public-key = abc\n")
    with pytest.raises(CurveError, match="no 'secret-key ='"):
        Curve.from_files("x" * 40, str(tmp_path / "half.key"))
    with pytest.raises(CurveError, match="SWITCHBOARD_CURVE_KEY_FILE is not"):
        Curve.from_env({"SWITCHBOARD_CURVE_SERVER_KEY": "x" * 40})
    with pytest.raises(CurveError, match="not the broker's public key"):
        Curve.from_env({"SWITCHBOARD_CURVE_KEY_FILE": "k"})
    assert Curve.from_env({}) is None
