"""A ``ClaimInput`` read straight from the schema-validated lxml tree into plain data.

spyne turns every element of a claim into an instance of its SOAP type (an object per address, fee and
document, each member set through its attribute machinery), and ``translate.to_plain`` then turns those
objects back into dicts: about two thirds of a SubmitClaims request's CPU in spyne and the translation went
there. The body has already passed the WSDL's schema when this runs (``Soap11PerClaim``), so the reader
only has to map elements onto field names and convert the few leaf types, giving what ``to_plain`` would
have made of spyne's object: text trimmed and composed (NFC), absent, nil and empty values left out, arrays
as lists.

It does what spyne does and nothing else: a claim with anything the reader does not handle the way spyne
does (an ``xsi:type`` or other attribute, a processing instruction, an unknown element, a comment in an
array) is read by spyne after all, and a leaf value it does not convert itself (``ByteArray``, a date that
is not plain ``YYYY-MM-DD``, a decimal that does not parse) is converted by spyne's own code. So what the
service sees, and every fault, is what it was; only the usual claim is faster.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from lxml import etree
from spyne.model.complex import Array, ComplexModelBase, XmlAttribute

from gateway.entrypoints.soap.translate import nfc, to_plain

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_TEXT, _DECIMAL, _DATE, _BOOL, _COMPLEX, _ARRAY, _SPYNE = range(7)
_COMMENT = etree.Comment
_TRUE = ("true", "1")

# element tag -> (field name, kind, reader of a complex type or an array's item, spyne type)
Fields = dict[str, tuple[str, int, Any, Any]]


class Unusual(Exception):
    """The claim has something spyne reads its own way: spyne reads the whole claim."""


class ClaimReader:
    """Reads elements of one complex SOAP type (and its members), as ``to_plain`` of spyne's object would be."""

    def __init__(self, protocol: Any, cls: Any) -> None:
        self.protocol = protocol
        self.fields: Fields = {}
        self.by_name: Fields = {}  # spyne matches a child by its local name only
        if not _plain_complex(protocol, cls):
            raise TypeError(f"{cls}: XML attributes or alternative names are not read here")
        ns = cls.get_namespace()
        for name, ftype in cls.get_flat_type_info(cls).items():
            fattrs = protocol.get_cls_attrs(ftype)
            if fattrs.max_occurs != 1 or fattrs.read_only:  # spyne collects the one, never sets the other
                raise TypeError(f"{cls}.{name}: a repeated or read-only member is not read here")
            spec = (name, *self._kind(ftype))
            self.fields[f"{{{ns}}}{name}"] = spec
            self.by_name[name] = spec

    def _kind(self, ftype: Any) -> tuple[int, Any, Any]:
        p = self.protocol
        attrs = p.get_cls_attrs(ftype)
        if attrs.default is not None:
            raise TypeError(f"{ftype}: a default for nil is not read here")
        handler, convert = p.deserialization_handlers[ftype], p._from_unicode_handlers[ftype]
        if handler == p.unicode_from_element and convert == p.unicode_from_bytes and attrs.encoding is None:
            return _TEXT, None, ftype
        if handler == p.base_from_element:
            if convert == p.decimal_from_unicode:
                return _DECIMAL, float(attrs.max_str_len), ftype
            # SOAP reads dates as ISO (date_from_unicode_iso); the plain protocol by format, here none
            if convert == p.date_from_unicode_iso or (convert == p.date_from_unicode
                                                       and p._get_date_format(attrs) is None):
                return _DATE, None, ftype
            if convert == p.boolean_from_bytes:
                return _BOOL, None, ftype
        try:
            if handler == p.array_from_element and issubclass(ftype, Array):
                (inner,) = ftype._type_info.values()
                return _ARRAY, _Item(self, inner), ftype
            if handler == p.complex_from_element and issubclass(ftype, ComplexModelBase):
                return _COMPLEX, ClaimReader(p, ftype), ftype
        except TypeError:
            pass  # a member type the reader does not read: spyne reads it
        return _SPYNE, None, ftype

    def read(self, ctx: Any, element: Any) -> dict[str, Any]:
        """``element``'s children as a dict of field name -> plain value (``Unusual``: spyne must read it)."""
        out: dict[str, Any] = {}
        fields = self.fields
        for child in element:
            tag = child.tag
            spec = fields.get(tag)
            if spec is None:
                if tag is _COMMENT:
                    continue  # spyne skips comments between members
                if not isinstance(tag, str) or (spec := self.by_name.get(tag.rsplit("}", 1)[-1])) is None:
                    raise Unusual(tag)
            if child.attrib:
                if child.keys() != [XSI_NIL]:
                    raise Unusual("attribute")
                if child.get(XSI_NIL):  # any value but "" is nil to spyne: the member stays unset
                    out.pop(spec[0], None)
                    continue
            name, kind, sub, ftype = spec
            value = _value(ctx, self.protocol, child, kind, sub, ftype)
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return out


class _Item:
    """An array's item type: how each child element of the array is read."""

    def __init__(self, owner: ClaimReader, inner: Any) -> None:
        self.kind, self.sub, self.ftype = owner._kind(inner)

    def read(self, ctx: Any, protocol: Any, element: Any) -> list[Any]:
        kind, sub, ftype = self.kind, self.sub, self.ftype
        out = []
        for child in element:
            if not isinstance(child.tag, str):
                raise Unusual("comment in an array")  # spyne reads it as an item
            if child.attrib:
                if child.keys() != [XSI_NIL]:
                    raise Unusual("attribute")
                if child.get(XSI_NIL):
                    continue  # a nil item: to_plain leaves it out
            value = _value(ctx, protocol, child, kind, sub, ftype)
            if value is not None:
                out.append(value)
        return out


def _value(ctx: Any, protocol: Any, child: Any, kind: int, sub: Any, ftype: Any) -> Any:
    """One member element's plain value (None: left out)."""
    if kind == _TEXT:
        text = child.text
        return (nfc(text.strip()) or None) if text else None
    if kind == _COMPLEX:
        return sub.read(ctx, child)
    if kind == _ARRAY:
        return sub.read(ctx, protocol, child)
    text = child.text
    if text is None and kind != _SPYNE:
        return None  # spyne: a date, decimal or boolean without text is None
    if kind == _DATE:
        if len(text) == 10 and text[4] == "-" and text[7] == "-" and text.isascii():
            try:
                return date(int(text[:4]), int(text[5:7]), int(text[8:]))
            except ValueError:
                pass
    elif kind == _DECIMAL:
        if len(text) <= sub:
            try:
                return Decimal(text)
            except InvalidOperation:
                pass
    elif kind == _BOOL:
        return text.lower() in _TRUE
    return to_plain(protocol.from_element(ctx, ftype, child))  # spyne's own conversion (and its errors)


def _plain_complex(protocol: Any, cls: Any) -> bool:
    """A complex type spyne reads from its child elements alone (no XML attributes, no alternative names)."""
    attrs = protocol.get_cls_attrs(cls)
    members = cls.get_flat_type_info(cls).values()
    return (not getattr(cls, "_type_info_alt", None) and getattr(attrs, "_xml_tag_body_as", None) is None
            and not any(isinstance(m, type) and issubclass(m, XmlAttribute) for m in members))


def install(protocol: Any, claim_types: list[Any]) -> None:
    """Have ``protocol`` (a spyne XML protocol) read elements of ``claim_types`` with a ``ClaimReader``."""
    for cls in claim_types:
        reader = ClaimReader(protocol, cls)
        fallback: Callable[[Any, Any, Any], Any] = protocol.complex_from_element

        def read(ctx: Any, cls: Any, element: Any, _reader: ClaimReader = reader,
                 _fallback: Callable[[Any, Any, Any], Any] = fallback) -> Any:
            try:
                return _reader.read(ctx, element)
            except Unusual:
                return _fallback(ctx, cls, element)

        protocol.deserialization_handlers[cls] = read
