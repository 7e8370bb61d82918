"""dlib's serialisation primitives (dlib/serialize.h, float_details.h, matrix.h, dnn tensor.h), read-only.

  integer    one control byte: low 4 bits = n, the number of little-endian magnitude bytes that follow (1..8);
             bit 0x80 = negative (signed types). 0 is written as n = 1, byte 0.
  float      float_details: mantissa (signed integer) then exponent (signed integer); value = mantissa * 2^exponent,
             exponent 32000 / 32001 / 32002 = +inf / -inf / NaN.
  bool       one ASCII byte '0' or '1'.
  string     unsigned integer length, then the bytes (no terminator).
  vector     unsigned integer count, then each element.
  matrix     rows then columns as signed integers (negated in the current format), then the elements row-major.
  tensor     (dnn resizable_tensor) int version 2, num_samples, k, nr, nc, then num_samples*k*nr*nc float32
             little-endian IEEE values (not float_details).
  alias      (dnn alias_tensor, a shape only) int version 1, num_samples, k, nr, nc.
Every size is checked against the bytes left, so a corrupt or hostile file cannot ask for unbounded memory.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from ...errors import DataError

INF_EXPONENT, NINF_EXPONENT, NAN_EXPONENT = 32000, 32001, 32002


class Reader:
    """Sequential reader over the bytes of one dlib file; errors name the file and the byte offset."""

    def __init__(self, data: bytes, where: str = "dlib file"):
        self.data = memoryview(data)
        self.pos = 0
        self.where = where

    # ------------------------------------------------------------------ basics

    def error(self, what: str) -> DataError:
        return DataError(
            f"{self.where}: {what} at byte {self.pos} of {len(self.data)}; the file is truncated, corrupt or not "
            "the dlib model expected. Fetch it again (facezoo models fetch dlib --force)."
        )

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.remaining:
            raise self.error(f"{n} bytes wanted, {self.remaining} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def peek_byte(self) -> int:
        if not self.remaining:
            raise self.error("end of file")
        return self.data[self.pos]

    def integer(self, signed: bool = True) -> int:
        """A packed integer (see the module doc)."""
        control = self.take(1)[0]
        size = control & 0x0F
        if (control & 0x70) or size == 0 or size > 8 or (not signed and control & 0x80):
            self.pos -= 1
            raise self.error(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(bytes(self.take(size)), "little")
        return -value if control & 0x80 else value

    def uint(self) -> int:
        return self.integer(signed=False)

    def real(self) -> float:
        """A float_details value as a Python float (float64; callers cast to float32 where dlib stores float)."""
        if self.peek_byte() & 0x70:
            raise self.error("an ASCII (pre-2011) float, which these readers do not support")
        mantissa, exponent = self.integer(), self.integer()
        if exponent == INF_EXPONENT:
            return math.inf
        if exponent == NINF_EXPONENT:
            return -math.inf
        if exponent == NAN_EXPONENT:
            return math.nan
        if not -2000 <= exponent <= 2000:
            raise self.error(f"float exponent {exponent} out of range")
        return math.ldexp(float(mantissa), exponent)

    def boolean(self) -> bool:
        ch = self.take(1)[0]
        if ch not in (ord("0"), ord("1")):
            self.pos -= 1
            raise self.error(f"bool byte 0x{ch:02x} is neither '0' nor '1'")
        return ch == ord("1")

    def string(self, max_len: int = 1 << 20) -> str:
        n = self.uint()
        if n > max_len:
            raise self.error(f"string of {n} bytes")
        return bytes(self.take(n)).decode("latin-1")

    def expect(self, *names: str) -> str:
        """A version string that must be one of `names`; returns it."""
        start = self.pos
        try:
            name = self.string(max_len=256)
        except DataError:
            name = None
        if name not in names:
            self.pos = start
            raise self.error(f"expected {' or '.join(repr(n) for n in names)}, found {name!r}")
        return name

    def version(self, *allowed: int) -> int:
        v = self.integer()
        if v not in allowed:
            self.pos -= 1
            raise self.error(f"version {v} where {' or '.join(map(str, allowed))} is expected")
        return v

    def count(self, min_bytes_each: int = 1) -> int:
        """A container size, refused when its elements could not fit in the bytes left."""
        n = self.uint()
        if n * min_bytes_each > self.remaining:
            raise self.error(f"a container of {n} elements")
        return n

    # ------------------------------------------------------------------ containers

    def vector(self, read_item, min_bytes_each: int = 1) -> list:
        return [read_item() for _ in range(self.count(min_bytes_each))]

    def reals(self, n: int) -> np.ndarray:
        """n consecutive float_details values as float64 (see defer_reals / decode_reals)."""
        starts = array("q")
        self.defer_reals(n, starts)
        return self.decode_reals(starts)

    def defer_reals(self, n: int, starts: array) -> None:
        """Skip n consecutive float_details values, appending where each starts to `starts` for decode_reals: the
        68-point shape predictor holds 16 million, decoded together with numpy instead of one by one."""
        if n * 4 > self.remaining:  # each value is at least 4 bytes (two packed integers)
            raise self.error(f"{n} floats")
        lengths, p = self._lengths(), self.pos
        for _ in range(n):
            starts.append(p)
            p += lengths[p]
        if p > len(self.data):
            raise self.error(f"{n} floats running past the end")
        self.pos = p

    def decode_reals(self, starts: array) -> np.ndarray:
        """The float64 values of the float_details starting at the offsets `starts`."""
        at = np.frombuffer(starts, dtype=np.int64) if len(starts) else np.zeros(0, np.int64)
        mantissa, n1 = self._ints(at)
        exponent, _ = self._ints(at + 1 + n1)
        special = np.abs(exponent) > 2000
        if special.any() and not np.isin(exponent[special], (INF_EXPONENT, NINF_EXPONENT, NAN_EXPONENT)).all():
            self.pos = int(at[special][0])
            raise self.error("a float exponent out of range")
        with np.errstate(over="ignore"):
            out = np.ldexp(mantissa.astype(np.float64), np.where(special, 0, exponent).astype(np.int32))
        out[exponent == INF_EXPONENT], out[exponent == NINF_EXPONENT] = np.inf, -np.inf
        out[exponent == NAN_EXPONENT] = np.nan
        return out

    def _padded(self) -> np.ndarray:
        if getattr(self, "_bytes", None) is None:
            self._bytes = np.concatenate([np.frombuffer(self.data, np.uint8), np.zeros(32, np.uint8)])
        return self._bytes

    def _lengths(self) -> bytes:
        """For every byte offset p: the length of a float_details starting at p (two packed integers), as bytes."""
        if getattr(self, "_length_table", None) is None:
            b = self._padded()
            size = b & 0x0F
            out = bytearray(len(self.data))
            step = 1 << 22
            for s in range(0, len(self.data), step):
                p = np.arange(s, min(s + step, len(self.data)), dtype=np.int64)
                first = 1 + size[p].astype(np.int64)
                out[s : s + len(p)] = (first + 1 + size[np.minimum(p + first, len(b) - 1)]).astype(np.uint8).tobytes()
            self._length_table = bytes(out)
        return self._length_table

    def _ints(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values int64, byte counts) of the packed signed integers starting at offsets `at`."""
        b = self._padded()
        control = b[at]
        size = (control & 0x0F).astype(np.int64)
        if ((control & 0x70) != 0).any() or (size == 0).any() or (size > 8).any():
            self.pos = int(at[((control & 0x70) != 0) | (size == 0) | (size > 8)][0])
            raise self.error("a bad integer control byte inside a float")
        value = np.zeros(len(at), np.uint64)
        for i in range(8):
            byte = np.where(i < size, b[at + 1 + i], 0).astype(np.uint64)
            value |= byte << np.uint64(8 * i)
        value = value.astype(np.int64)  # magnitudes of dlib's int64 mantissas fit
        return np.where(control & 0x80, -value, value), size

    def matrix(self, dtype=np.float32) -> np.ndarray:
        """A dlib::matrix of float_details elements as an (rows, cols) array."""
        rows, cols = abs(self.integer()), abs(self.integer())
        return self.reals(rows * cols).astype(dtype).reshape(rows, cols)

    def tensor(self) -> np.ndarray:
        """A dnn resizable_tensor as a float32 (num_samples, k, nr, nc) array."""
        self.version(2)
        shape = tuple(self.integer() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.error(f"negative tensor shape {shape}")
        n = math.prod(shape)
        return np.frombuffer(self.take(4 * n), dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """A dnn alias_tensor: only its (num_samples, k, nr, nc) shape."""
        self.version(1)
        shape = tuple(self.integer() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.error(f"negative alias_tensor shape {shape}")
        return shape

    def at_end(self) -> None:
        if self.remaining:
            raise self.error(f"{self.remaining} unread bytes after the model")
