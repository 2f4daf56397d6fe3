"""Objects chosen by name, as ``schedules.get`` does: the lookup shared by predictions and weightings."""
from __future__ import annotations


def build(value, table: dict, base: type, what: str, params: dict):
    """``value`` itself if it is already a ``base``, else ``table[value](**params)``; one ValueError naming
    ``what`` for an unknown name, bad parameters, or parameters given with an object."""
    if isinstance(value, base):
        if params:
            raise ValueError(f"parameters {sorted(params)} go with a {what} name, not with {value!r}")
        return value
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(table)}")
    try:
        return table[value](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for {what} {value!r}: {err}") from None
