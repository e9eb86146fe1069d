"""One way to patch an attribute for the length of a block: `patched(obj, name, value)`.

Capture hooks, memory overrides and timers all replace a bound method on an instance for a while. The
context manager remembers exactly what it found, an instance attribute (another wrapper's) or none (the
class attribute shows through), and puts that back on exit, also when the block raises. So patches
nest in any order: `with A: with B:` leaves A in place when B exits and the original when A exits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_ABSENT = object()


@contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[object]:
    """Set `obj.<name> = value` for the block; yield what was visible before (to call through)."""
    before = getattr(obj, name)
    found = vars(obj).get(name, _ABSENT)
    setattr(obj, name, value)
    try:
        yield before
    finally:
        if found is _ABSENT:
            vars(obj).pop(name, None)
        else:
            setattr(obj, name, found)
