"""Plain data for crossing a process or machine boundary: JSON plus array payloads.

``Request.to_dict`` and ``Result.to_dict`` give nested dicts of JSON values in
which numpy arrays and raw bytes stay as they are (so an in-process caller pays
no copy). ``split_payloads`` turns such a dict into one JSON-able document plus
a flat ``{key: ndarray | bytes}`` table a transport can pack however it likes
(``.npz``, multipart, Ray's object store), and ``join_payloads`` undoes it.
``deep_equal`` compares two such trees, arrays included, for the round-trip
``__eq__`` of the request and result types.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ARRAY_KEY = "$array"
BYTES_KEY = "$bytes"


def split_payloads(tree: Any) -> tuple[Any, dict[str, Any]]:
    """Replace every array and bytes value by a reference into the returned table."""
    table: dict[str, Any] = {}

    def visit(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            key = f"a{len(table)}"
            table[key] = value
            return {ARRAY_KEY: key}
        if isinstance(value, (bytes, bytearray, memoryview)):
            key = f"b{len(table)}"
            table[key] = bytes(value)
            return {BYTES_KEY: key}
        if isinstance(value, dict):
            return {str(k): visit(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [visit(v) for v in value]
        return value

    return visit(tree), table


def join_payloads(document: Any, table: dict[str, Any]) -> Any:
    """The inverse of :func:`split_payloads`; a missing key is a ``KeyError`` naming it."""

    def visit(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {ARRAY_KEY}:
                return np.asarray(table[value[ARRAY_KEY]])
            if set(value) == {BYTES_KEY}:
                return bytes(table[value[BYTES_KEY]])
            return {k: visit(v) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v) for v in value]
        return value

    return visit(document)


class EqualByDict:
    """Mixin for ``@dataclass(eq=False)`` types with ``to_dict``: equal when their data is.

    Dataclass equality compares fields with ``==``, which is ambiguous for numpy
    arrays; comparing the plain-data form also makes "equal" mean "would
    arrive equal on the other side of a transport".
    """

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return deep_equal(self.to_dict(), other.to_dict())  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq


def deep_equal(a: Any, b: Any) -> bool:
    """Structural equality where arrays compare by dtype, shape and every element."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(deep_equal, a, b))
    return type(a) is type(b) and a == b
