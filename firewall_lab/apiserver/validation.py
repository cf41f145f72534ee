"""Structural-schema admission for custom resources: prune, default, validate.

Follows apiextensions-apiserver for the keywords CRDs use: ``type``
(``nullable``, ``x-kubernetes-int-or-string``), ``properties``,
``additionalProperties``, ``items``, ``required``, ``enum``, ``minimum``/``maximum``
(and exclusive), ``minLength``/``maxLength``, ``pattern``, ``minItems``/
``maxItems``, ``minProperties``/``maxProperties``, ``x-kubernetes-list-type``
(set/map uniqueness), ``allOf``/``anyOf``/``oneOf``/``not``,
``x-kubernetes-preserve-unknown-fields`` and ``x-kubernetes-validations`` (CEL,
see ``cel``).  Pure functions, no I/O; problems come back as Status causes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from firewall_lab.apiserver import cel, errors

Json = dict[str, Any]
ROOT_KEPT = ("apiVersion", "kind", "metadata")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _type_ok(schema: Json, value: Any) -> bool:
    if value is None:
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    wanted = schema.get("type")
    if not wanted:
        return True
    if isinstance(value, bool) and wanted != "boolean":
        return False
    return isinstance(value, _TYPES.get(wanted, (object,)))


def prune(schema: Json, value: Any, *, path: str = "", root: bool = False) -> list[str]:
    """Drop fields the schema does not know, in place; returns their paths."""
    dropped: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        for key in list(value):
            sub = f"{path}.{key}" if path else key
            if root and key in ROOT_KEPT:
                continue  # apiVersion, kind and metadata are never pruned
            if key in props:
                dropped += prune(props[key], value[key], path=sub)
            elif isinstance(extra, dict):
                dropped += prune(extra, value[key], path=sub)
            elif not keep_unknown:
                del value[key]
                dropped.append(sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            dropped += prune(schema["items"], item, path=f"{path}[{index}]")
    return dropped


def apply_defaults(schema: Json, value: Any) -> None:
    """Fill ``default`` values of missing properties, in place, recursively."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)


def _scalar_causes(schema: Json, value: Any, path: str) -> list[Json]:
    out: list[Json] = []
    shown = errors.shown(value)
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(errors.shown(v) for v in schema["enum"])
        out.append(
            errors.cause(
                path,
                f"Unsupported value: {shown}: supported values: {allowed}",
                "FieldValueNotSupported",
            )
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and (value < low or (schema.get("exclusiveMinimum") and value == low)):
            out.append(
                errors.cause(
                    path, f"Invalid value: {shown}: should be greater than or equal to {low}"
                )
            )
        if high is not None and (
            value > high or (schema.get("exclusiveMaximum") and value == high)
        ):
            out.append(
                errors.cause(
                    path, f"Invalid value: {shown}: should be less than or equal to {high}"
                )
            )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(
                errors.cause(
                    path,
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                    "FieldValueTooLong",
                )
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(
                errors.cause(
                    path,
                    f"Invalid value: {shown}: should be at least {schema['minLength']} chars long",
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(
                errors.cause(path, f"Invalid value: {shown}: should match '{schema['pattern']}'")
            )
    return out


def _collection_causes(schema: Json, value: Any, path: str) -> list[Json]:
    out: list[Json] = []
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(
                errors.cause(
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    "FieldValueTooMany",
                )
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(
                errors.cause(
                    path,
                    f"Invalid value: {len(value)}: should have at least {schema['minItems']} items",
                )
            )
        out += _list_type_causes(schema, value, path)
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                out.append(
                    errors.cause(
                        f"{path}.{key}" if path else key, "Required value", "FieldValueRequired"
                    )
                )
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.append(
                errors.cause(
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                    "FieldValueTooMany",
                )
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            out.append(
                errors.cause(
                    path,
                    f"Invalid value: should have at least {schema['minProperties']} properties",
                )
            )
    return out


def _list_type_causes(schema: Json, value: list[Any], path: str) -> list[Json]:
    kind = schema.get("x-kubernetes-list-type")
    if kind not in ("set", "map"):
        return []
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: list[Any] = []
    out: list[Json] = []
    for index, item in enumerate(value):
        ident = (
            item
            if kind == "set"
            else [item.get(k) if isinstance(item, dict) else None for k in keys]
        )
        if ident in seen:
            out.append(
                errors.cause(
                    f"{path}[{index}]",
                    f"Duplicate value: {errors.shown(item)}",
                    "FieldValueDuplicate",
                )
            )
        seen.append(ident)
    return out


def _combinator_causes(schema: Json, value: Any, path: str) -> list[Json]:
    out: list[Json] = []
    for sub in schema.get("allOf", ()):
        out += validate(sub, value, path=path)
    if "anyOf" in schema and all(validate(s, value, path=path) for s in schema["anyOf"]):
        out.append(errors.cause(path, "Invalid value: must validate at least one schema (anyOf)"))
    if "oneOf" in schema:
        passing = sum(1 for s in schema["oneOf"] if not validate(s, value, path=path))
        if passing != 1:
            out.append(
                errors.cause(path, "Invalid value: must validate one and only one schema (oneOf)")
            )
    if "not" in schema and not validate(schema["not"], value, path=path):
        out.append(errors.cause(path, "Invalid value: must not validate the schema (not)"))
    return out


def validate(schema: Json, value: Any, *, path: str = "", old: Any = None) -> list[Json]:
    """Every violation of ``schema`` by ``value`` (``old`` feeds CEL ``oldSelf``)."""
    if not _type_ok(schema, value):
        got = errors.json_type(value)
        wanted = schema.get("type", "int-or-string")
        return [
            errors.cause(
                path,
                f'Invalid value: "{got}": {path or "body"} in body must be '
                f'of type {wanted}: "{got}"',
                "FieldValueTypeInvalid",
            )
        ]
    if value is None:
        return []
    out = _scalar_causes(schema, value, path) + _collection_causes(schema, value, path)
    out += _combinator_causes(schema, value, path)
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            sub_schema = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                sub = f"{path}.{key}" if path else key
                out += validate(sub_schema, item, path=sub, old=old_map.get(key))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            out += validate(schema["items"], item, path=f"{path}[{index}]")
    out += cel.check(schema.get("x-kubernetes-validations") or [], value, old=old, path=path)
    return out
