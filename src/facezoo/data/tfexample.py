"""tf.train.Example, the payload of a TFRecord, encoded and decoded without TensorFlow or protobuf.

Wire format (protobuf): each field is a varint key (field_number << 3 | wire_type) then its value; wire type 0 =
varint, 1 = 8 bytes, 2 = varint length + bytes, 5 = 4 bytes. The messages:
  message Example { Features features = 1; }   message Features { map<string, Feature> feature = 1; }
  message Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
  message BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
  message Int64List { repeated int64 value = 1 [packed]; }; a map entry is a message { key = 1; value = 2; }.
Every length is checked against its enclosing message, so a hostile record cannot make the parser read past it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import DataError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # wire types


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # negative int64 values are encoded as their two's complement
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(body)) + body


def encode_example(features: dict[str, bytes | Sequence[int]]) -> bytes:
    """A serialised tf.train.Example: bytes values become a BytesList, int sequences an Int64List (packed)."""
    entries = []
    for key in sorted(features):
        value = features[key]
        if isinstance(value, (bytes, bytearray, memoryview)):
            feature = _len_field(1, _len_field(1, bytes(value)))
        else:
            feature = _len_field(3, _len_field(1, b"".join(_varint(int(v)) for v in value)))
        entries.append(_len_field(1, _len_field(1, key.encode()) + _len_field(2, feature)))
    return _len_field(1, b"".join(entries))


def _read_varint(buf, pos: int, end: int, where: str) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise DataError(f"{where}: malformed tf.train.Example (varint runs past its field). The record is corrupt.")


def _fields(buf, pos: int, end: int, where: str) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, stop) of each field in buf[pos:end]; for varints start is the value."""
    while pos < end:
        key, pos = _read_varint(buf, pos, end, where)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos, end, where)
            yield number, wire, value, pos
            continue
        if wire == _LEN:
            size, pos = _read_varint(buf, pos, end, where)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
        else:
            raise DataError(f"{where}: malformed tf.train.Example (wire type {wire}). The record is corrupt.")
        if pos + size > end:
            raise DataError(f"{where}: malformed tf.train.Example (a field runs past its message). It is corrupt.")
        yield number, wire, pos, pos + size
        pos += size


def _feature_values(buf, start: int, stop: int, where: str) -> list:
    """Values of one Feature message: bytes, int or float, whichever list it holds."""
    out: list = []
    for kind, wire, a, b in _fields(buf, start, stop, where):
        if wire != _LEN:
            continue
        for number, w, x, y in _fields(buf, a, b, where):
            if number != 1:
                continue
            if kind == 1 and w == _LEN:
                out.append(bytes(buf[x:y]))
            elif kind == 2:  # floats: packed (LEN) or one fixed32
                out.extend(np.frombuffer(bytes(buf[x:y]), "<f4").tolist())
            elif kind == 3 and w == _VARINT:
                out.append(x - (1 << 64) if x >= 1 << 63 else x)
            elif kind == 3 and w == _LEN:
                p = x
                while p < y:
                    v, p = _read_varint(buf, p, y, where)
                    out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def decode_example(payload: bytes, where: str = "record") -> dict[str, list]:
    """{feature name: list of values} of a serialised tf.train.Example; unknown fields are skipped."""
    buf = memoryview(payload)
    features: dict[str, list] = {}
    for number, wire, a, b in _fields(buf, 0, len(buf), where):
        if number != 1 or wire != _LEN:
            continue
        for n2, w2, x, y in _fields(buf, a, b, where):
            if n2 != 1 or w2 != _LEN:
                continue
            key, value = "", (0, 0)
            for n3, w3, s, t in _fields(buf, x, y, where):
                if n3 == 1 and w3 == _LEN:
                    key = bytes(buf[s:t]).decode("utf-8", errors="replace")
                elif n3 == 2 and w3 == _LEN:
                    value = (s, t)
            features[key] = _feature_values(buf, value[0], value[1], where)
    return features


def image_of(payload: bytes, where: str) -> bytes:
    """The `image` bytes feature of a record's Example."""
    values = decode_example(payload, where).get("image")
    if not values or not isinstance(values[0], bytes):
        raise DataError(f"{where}: the record's tf.train.Example has no bytes feature 'image'. Not a TFace record.")
    return values[0]
