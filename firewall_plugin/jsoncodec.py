"""JSON for the CNI plugin's start-up path, without importing the json package.

``import json`` pulls in ``re`` and with it ``enum``, ``functools`` and
``collections``: 5-8 ms of CPU at every plugin start (``-X importtime``),
a fifth of the plugin's whole run.  The parsing and encoding themselves are
done by CPython's C accelerator ``_json`` in either case, so ``loads`` and
``dumps`` here drive ``_json`` directly, configured exactly as ``json.loads``
and ``json.dumps`` configure it by default: same results.  Malformed input
is handed to ``json.loads`` (imported then), so the error is json's own
``JSONDecodeError`` (a ``ValueError``); one difference: nesting deeper
than the interpreter's recursion limit (``[`` * 50,000) raises ValueError
too, where json raises RecursionError.  On an interpreter without ``_json``
both fall back to the json package.

Pure: no I/O.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - other interpreters
    _json = None  # type: ignore[assignment]

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from typing import Any

WHITESPACE = " \t\n\r"  # what json.decoder.WHITESPACE skips


def _constant(name: str) -> float:
    return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


class _DecoderSettings:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``,
    with ``JSONDecoder()``'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)


def loads(text: str) -> Any:
    """``json.loads(text)`` for a str."""
    if _json is not None and not text.startswith("\ufeff"):
        start = len(text) - len(text.lstrip(WHITESPACE))
        # the stub asks for a JSONDecoder; the scanner only reads its attributes
        scan = _json.make_scanner(_DecoderSettings())  # type: ignore[arg-type]
        try:
            value, end = scan(text, start)
        except Exception:  # malformed: json.loads below raises the error
            pass
        else:
            rest = text[end:]
            if not rest.lstrip(WHITESPACE):
                return value
    # Malformed text (or no _json): the json package raises its JSONDecodeError.
    # _json cannot always do it alone: on 3.11 it raises through json.decoder
    # only when that module is already imported.
    import json

    try:
        return json.loads(text)
    except RecursionError:  # not malformed, but past what the decoder can nest
        raise ValueError("JSON nested too deeply to decode") from None


def _unserialisable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: object, *, sort_keys: bool = False, compact: bool = False) -> str:
    """``json.dumps(value, sort_keys=sort_keys)``; ``compact`` uses the
    separators ``(",", ":")``."""
    item, key = (",", ":") if compact else (", ", ": ")
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, sort_keys=sort_keys, separators=(item, key))
    encode = _json.make_encoder(
        {},  # markers: detect circular references, as check_circular=True does
        _unserialisable,
        _json.encode_basestring_ascii,
        None,  # indent
        key,
        item,
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan
    )
    return "".join(encode(value, 0))
