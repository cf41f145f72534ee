"""``Frozen``: the base of podwall's small immutable value classes.

The CNI plugin starts once per pod, and ``import dataclasses`` (which pulls in
``inspect``, ``ast``, ``dis``, ``tokenize``) plus building each dataclass costs
it ~10 ms, a third of its start-up.  The value classes on the plugin's path
(``model``, ``endpoints``, ``protocol``, ``config``, ``agent_client``) therefore
subclass ``Frozen`` and behave like ``@dataclass(frozen=True, slots=True)``:
the constructor, equality (same class, same field values), hashing, ``repr``,
immutability, pickling and copying.  ``replace(**changes)`` stands in for
``dataclasses.replace``.

A subclass declares its fields as annotations (their order is the field
order, as in a dataclass), names the same fields in ``__slots__``, and writes
an ``__init__`` whose parameters are the fields in order, ending in
``init_fields(self, <each parameter>)``.

Also ``literal_aliases``: ``Literal`` type aliases that exist at run time
without importing ``typing`` at start-up.

Equality and hashing read the fields through one ``operator.attrgetter`` per
class (C code): comparing the 844 chains of a 10,000-pod node field by field
in Python took ~4x as long.

Pure: no I/O, and no import beyond the interpreter's built-ins (``operator``
wraps the built-in ``_operator``).
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing typing costs ~4 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import ClassVar, Self


class FrozenInstanceError(AttributeError):
    """A field of a ``Frozen`` instance was assigned or deleted."""


class Frozen:
    """Immutable value object over the fields named in ``__slots__``."""

    __slots__: tuple[str, ...] = ()
    #: the field names, in declaration order (set for each subclass)
    _fields: ClassVar[tuple[str, ...]] = ()
    #: the fields' values (a tuple, or the value of a lone field): eq and hash
    _key: ClassVar[Callable[..., object]] = staticmethod(lambda _: ())

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        # not inspect.get_annotations: importing inspect is what this module avoids
        cls._fields = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
        if set(cls._fields) != set(cls.__slots__):
            raise TypeError(f"{cls.__name__}: __slots__ must name the annotated fields")
        if cls._fields:
            cls._key = attrgetter(*cls._fields)  # not a descriptor: stays unbound

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def field_values(self) -> tuple[object, ...]:
        """The fields' values, in declaration order."""
        return tuple(getattr(self, name) for name in self._fields)

    def as_dict(self) -> dict[str, object]:
        """The fields by name (a shallow copy, like ``dataclasses.asdict`` of flat fields)."""
        return {name: getattr(self, name) for name in self._fields}

    def replace(self, **changes: object) -> Self:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        unknown = changes.keys() - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        return type(self)(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = self._key
        return key(self) == key(other)

    def __hash__(self) -> int:
        return hash(self._key(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return type(self), self.field_values()


def init_fields(instance: Frozen, *values: object) -> None:
    """Set ``instance``'s fields, in declaration order (for ``__init__`` only)."""
    for name, value in zip(instance._fields, values, strict=True):
        object.__setattr__(instance, name, value)


def literal_aliases(module: str, choices: dict[str, tuple[str, ...]]) -> Callable[[str], object]:
    """A module ``__getattr__`` that builds ``Literal[...]`` aliases on first use.

    The aliases matter to mypy (which reads them under ``TYPE_CHECKING``) and
    to the rare runtime user such as ``typing.cast``; importing ``typing`` for
    them would cost every plugin start."""

    def __getattr__(name: str) -> object:
        if name not in choices:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        from typing import Literal

        return Literal[choices[name]]

    return __getattr__
