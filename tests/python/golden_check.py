"""Checks the golden vectors (protocol/testdata/golden.json) with Python's msgpack.

Each vector's value, rebuilt from JSON ({"$bin": base64} is bytes, {"$timestamp": RFC 3339} a
msgpack.Timestamp), must pack to exactly the vector's bytes, and the bytes must unpack to it.
    python3 golden_check.py golden.json           check
    python3 golden_check.py golden.json --write   fill in missing "hex" fields
"""

import base64
import datetime
import json
import sys

import msgpack


def from_json(value):
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$bin"]:
            return base64.b64decode(value["$bin"])
        if list(value) == ["$timestamp"]:
            when = datetime.datetime.fromisoformat(value["$timestamp"])
            return msgpack.Timestamp.from_datetime(when)
        return {k: from_json(v) for k, v in value.items()}
    return value


def main():
    path = sys.argv[1]
    with open(path) as f:
        vectors = json.load(f)
    for vector in vectors:
        value = from_json(vector["value"])
        packed = msgpack.packb(value).hex()
        if "--write" in sys.argv:
            vector["hex"] = packed
            continue
        assert packed == vector["hex"], f"{vector['name']}: packs to {packed}, golden {vector['hex']}"
        unpacked = msgpack.unpackb(bytes.fromhex(vector["hex"]), timestamp=0)
        assert unpacked == value, f"{vector['name']}: unpacks to {unpacked!r}, expected {value!r}"
    if "--write" in sys.argv:
        with open(path, "w") as f:
            json.dump(vectors, f, indent=2)
            f.write("\n")
    print(f"golden vectors: {len(vectors)} ok")


if __name__ == "__main__":
    main()
