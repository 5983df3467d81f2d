"""Writer options: a writer takes the options it documents and refuses any other.

An option spelt wrong (``kind="polyface"`` for ``entity="polyface"``) would
otherwise be dropped without a word and the file written with the default.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import ExportError


def refuse_unknown(writer: str, options: dict[str, Any], known: Iterable[str]) -> None:
    """Raise :class:`ExportError` naming ``options`` that ``writer`` doesn't take."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ExportError(
            f"{writer} doesn't take the option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(known)) or 'none'}."
        )
