"""SubmitClaims' answer written into spyne's response tree without spyne's per-value machinery.

spyne serializes each value of an answer through several generic layers (polymorphism check, class
attributes looked up in weak dictionaries, a coroutine per complex value): about 0.8 ms of a 10-claim
SubmitClaims answer. ``AnswerWriter`` does the same steps with what they resolve to for these types worked
out once: for each member, its tag and how its value becomes text (spyne's own conversions: ``str`` of an
integer or decimal, ``true``/``false``), members that are None left out as spyne leaves them out. The
elements go into the same tree spyne builds (its envelope, its namespace clean-up, its string), so the bytes
are the same.

Anything else is handed to spyne as before: a value of another type than declared (a list for an object,
bytes for a text), a None that spyne would write as ``xsi:nil``, a streamed answer, a type the writer does
not compile (formats, excluded or renamed members, inheritance, polymorphism).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from lxml import etree
from spyne.model.complex import Array, ComplexModelBase

_TEXT, _INT, _DECIMAL, _BOOL, _COMPLEX, _ARRAY, _SPYNE = range(7)
_SubElement = etree.SubElement
_Element = etree._Element


class AnswerWriter:
    """Writes instances of one complex SOAP type (and, nested, its members' types) as spyne would."""

    def __init__(self, protocol: Any, cls: Any) -> None:
        self.protocol = protocol
        self.cls = cls
        self.instance_class = getattr(cls, "__orig__", None) or cls
        if getattr(cls, "__extends__", None) is not None or protocol.polymorphic:
            raise TypeError(f"{cls}: inheritance and polymorphism are left to spyne")
        if not _plain_name(protocol, cls):
            raise TypeError(f"{cls}: a renamed type or a sub-protocol is left to spyne")
        ns = cls.get_namespace()
        # (attribute, tag, kind, writer of a complex type or an array's item, spyne type, namespace, name)
        self.members: list[tuple[str, str, int, Any, Any, str, str]] = []
        for name, ftype in cls._type_info.items():
            fattrs = protocol.get_cls_attrs(ftype)
            if fattrs.exc:
                raise TypeError(f"{cls}.{name}: an excluded member is left to spyne")
            if ftype.Attributes.max_occurs > 1:
                raise TypeError(f"{cls}.{name}: a repeated member is left to spyne")
            sub_ns = ns if ftype.Attributes.sub_ns is None else ftype.Attributes.sub_ns
            sub_name = name if ftype.Attributes.sub_name is None else ftype.Attributes.sub_name
            kind, sub = _kind(protocol, ftype)
            self.members.append((name, f"{{{sub_ns}}}{sub_name}", kind, sub, ftype, sub_ns, sub_name))
        self.min_occurs = {name: ftype.Attributes.min_occurs for name, ftype in cls._type_info.items()}

    def write(self, ctx: Any, inst: Any, parent: Any, tag: str) -> None:
        """``inst`` as the element ``tag`` appended to ``parent``."""
        elt = _SubElement(parent, tag)
        protocol = self.protocol
        for name, mtag, kind, sub, ftype, sub_ns, sub_name in self.members:
            value = getattr(inst, name, None)
            if value is None:
                if self.min_occurs[name] > 0:  # spyne writes xsi:nil (or the type's default)
                    protocol.to_parent(ctx, ftype, None, elt, sub_ns, sub_name)
                continue
            _write(ctx, protocol, elt, mtag, kind, sub, ftype, sub_ns, sub_name, value)

    def handler(self, fallback: Callable[..., Any]) -> Callable[..., Any]:
        """A spyne serialization handler (``complex_to_parent``'s signature) that writes with this writer."""
        instance_class, compiled = self.instance_class, self.cls

        def to_parent(ctx: Any, cls: Any, inst: Any, parent: Any, ns: Any, name: Any = None,
                      add_type: bool = False, **kwargs: Any) -> Any:
            # another class reaching this handler (a subclass, through spyne's lookup) is spyne's to write
            if cls is not compiled or add_type or type(inst) is not instance_class or not isinstance(parent, _Element):
                return fallback(ctx, cls, inst, parent, ns, name, add_type=add_type, **kwargs)
            self.write(ctx, inst, parent, f"{{{ns}}}{name or cls.get_type_name()}" if ns is not None
                       else name or cls.get_type_name())
            return None

        return to_parent


class _Items:
    """An array's items: their tag and how each is written (spyne: the array element, an element per item)."""

    def __init__(self, protocol: Any, array: Any) -> None:
        ((name, inner),) = array._type_info.items()
        if getattr(array, "__extends__", None) is not None or inner.Attributes.max_occurs <= 1 \
                or protocol.get_cls_attrs(inner).exc or not _plain_name(protocol, array):
            raise TypeError(f"{array}: left to spyne")
        ns = array.get_namespace()
        self.sub_ns = ns if inner.Attributes.sub_ns is None else inner.Attributes.sub_ns
        self.sub_name = name if inner.Attributes.sub_name is None else inner.Attributes.sub_name
        self.tag = f"{{{self.sub_ns}}}{self.sub_name}"
        self.inner = inner
        self.kind, self.sub = _kind(protocol, inner)


def _kind(protocol: Any, ftype: Any) -> tuple[int, Any]:
    p = protocol
    attrs = p.get_cls_attrs(ftype)
    if attrs.prot is not None or attrs.exc:
        return _SPYNE, None
    handler = p.serialization_handlers[ftype]
    if handler == p.modelbase_to_parent:
        plain = attrs.str_format is None and attrs.format is None
        convert = p._to_unicode_handlers[ftype]
        if convert == p.unicode_to_unicode and plain and attrs.encoding is None:
            return _TEXT, None
        if convert == p.integer_to_unicode and plain:
            return _INT, None
        if convert == p.decimal_to_unicode and plain:
            return _DECIMAL, None
        if convert == p.boolean_to_unicode:
            return _BOOL, None
        return _SPYNE, None
    if handler == p.complex_to_parent and isinstance(ftype, type) and issubclass(ftype, ComplexModelBase):
        try:
            if issubclass(ftype, Array) and len(getattr(ftype, "_type_info", ())) == 1:
                return _ARRAY, _Items(p, ftype)
            if not issubclass(ftype, Array):
                return _COMPLEX, AnswerWriter(p, ftype)
        except TypeError:
            pass
    return _SPYNE, None


def _write(ctx: Any, protocol: Any, parent: Any, tag: str, kind: int, sub: Any, ftype: Any, sub_ns: str,
           sub_name: str, value: Any) -> None:
    """One value that is not None, as spyne's ``to_parent`` would write it."""
    if kind == _TEXT:
        if type(value) is str:
            _SubElement(parent, tag).text = value
            return
    elif kind == _INT:
        int(value)  # spyne's sanity check (and its error)
        _SubElement(parent, tag).text = str(value)
        return
    elif kind == _BOOL:
        _SubElement(parent, tag).text = "true" if value else "false"
        return
    elif kind == _DECIMAL:
        Decimal(value)  # spyne's sanity check
        _SubElement(parent, tag).text = str(value)
        return
    elif kind == _COMPLEX:
        if type(value) is sub.instance_class:
            sub.write(ctx, value, parent, tag)
            return
    elif kind == _ARRAY:
        if type(value) is list or type(value) is tuple:
            elt = _SubElement(parent, tag)
            item_kind, item_sub, inner, item_tag = sub.kind, sub.sub, sub.inner, sub.tag
            for item in value:
                if item is None:
                    protocol.to_parent(ctx, inner, None, elt, sub.sub_ns, sub.sub_name)
                else:
                    _write(ctx, protocol, elt, item_tag, item_kind, item_sub, inner, sub.sub_ns, sub.sub_name, item)
            return
    protocol.to_parent(ctx, ftype, value, parent, sub_ns, sub_name)


def _plain_name(protocol: Any, cls: Any) -> bool:
    """spyne names the element of ``cls`` as its member (no name or namespace of its own, no sub-protocol)."""
    attrs = protocol.get_cls_attrs(cls)
    return attrs.sub_name is None and attrs.sub_ns is None and attrs.prot is None


def install(protocol: Any, answer_types: list[Any]) -> None:
    """Have ``protocol`` (spyne's XML out-protocol) write instances of ``answer_types`` with an ``AnswerWriter``."""
    for cls in answer_types:
        writer = AnswerWriter(protocol, cls)
        protocol.serialization_handlers[cls] = writer.handler(protocol.complex_to_parent)
