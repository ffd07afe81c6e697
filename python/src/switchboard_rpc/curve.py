"""CURVE settings of a peer that connects to the broker (client or worker).

The same files and variables as the Rust programs: a key pair file holds
`public-key = <Z85>` and `secret-key = <Z85>` lines (`client keygen NAME` writes one);
`SWITCHBOARD_CURVE_SERVER_KEY` (or `SWITCHBOARD_CURVE_SERVER_KEY_FILE`) is the broker's
public key and turns CURVE on; `SWITCHBOARD_CURVE_KEY_FILE` names this peer's key pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

import zmq
from zmq.utils import z85

from .errors import SwitchboardError


class CurveError(SwitchboardError):
    """CURVE settings that cannot be used (a missing file, a malformed key)."""


def _read_fields(path: str) -> Dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise CurveError(f"cannot read CURVE key file {path}: {error.strerror}") from error
    fields: Dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def read_public_key(path: str) -> str:
    """The one public key in a file: a bare Z85 line (as `client keygen` writes NAME.pub)
    or a `public-key = ...` line (a key pair file)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except OSError as error:
        raise CurveError(f"cannot read public key file {path}: {error.strerror}") from error
    keys = []
    for line in lines:
        if not line or line.startswith("#") or line.startswith("secret-key"):
            continue
        name, sep, value = line.partition("=")
        keys.append(value.strip() if sep and name.strip() == "public-key" else line)
    if len(keys) != 1:
        raise CurveError(f"{path} should hold exactly one public key, not {len(keys)}")
    return keys[0]


def _check_key(text: str, what: str) -> bytes:
    key = text.strip()
    try:
        if len(z85.decode(key.encode())) != 32:
            raise ValueError
    except Exception as error:  # noqa: BLE001 - any decode failure means the same
        raise CurveError(f"{what} is not a 40-character Z85 CURVE key") from error
    return key.encode()


@dataclass(frozen=True)
class Curve:
    """The broker's public key and this peer's key pair, all Z85."""

    server_key: bytes
    public_key: bytes
    secret_key: bytes = field(repr=False)

    @classmethod
    def from_files(cls, server_key: str, key_file: str) -> "Curve":
        """From the broker's public key (Z85 text) and this peer's key pair file."""
        fields = _read_fields(key_file)
        for name in ("public-key", "secret-key"):
            if name not in fields:
                raise CurveError(f"CURVE key file {key_file} has no '{name} =' line")
        return cls(
            server_key=_check_key(server_key, "the broker's public key"),
            public_key=_check_key(fields["public-key"], f"public-key in {key_file}"),
            secret_key=_check_key(fields["secret-key"], f"secret-key in {key_file}"),
        )

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> Optional["Curve"]:
        """From the `SWITCHBOARD_CURVE_*` variables; None when no broker key is set."""
        env = os.environ if env is None else env
        server_key = env.get("SWITCHBOARD_CURVE_SERVER_KEY")
        server_key_file = env.get("SWITCHBOARD_CURVE_SERVER_KEY_FILE")
        key_file = env.get("SWITCHBOARD_CURVE_KEY_FILE")
        if not server_key and server_key_file:
            server_key = read_public_key(server_key_file)
        if not server_key:
            if key_file:
                raise CurveError(
                    "SWITCHBOARD_CURVE_KEY_FILE is set but not the broker's public key "
                    "(SWITCHBOARD_CURVE_SERVER_KEY or SWITCHBOARD_CURVE_SERVER_KEY_FILE)"
                )
            return None
        if not key_file:
            raise CurveError("CURVE is on (the broker's key is set) but SWITCHBOARD_CURVE_KEY_FILE is not")
        return cls.from_files(server_key, key_file)

    def apply(self, socket: zmq.Socket) -> None:
        """Makes `socket` a CURVE client of the broker (before it connects)."""
        socket.curve_serverkey = self.server_key
        socket.curve_publickey = self.public_key
        socket.curve_secretkey = self.secret_key


def resolve(curve: "Curve | bool | None") -> Optional[Curve]:
    """`curve` as given to a client or worker: a Curve, False (off), or None (from the
    environment)."""
    if curve is None:
        return Curve.from_env()
    if curve is False:
        return None
    if isinstance(curve, Curve):
        return curve
    raise TypeError("curve is a Curve, False (off) or None (from SWITCHBOARD_CURVE_* variables)")
