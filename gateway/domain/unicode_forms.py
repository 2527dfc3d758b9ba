"""The Unicode forms a stored text may be in.

Every channel takes text in the composed form (NFC). Text stored before that may be decomposed (NFD: macOS and some
exports write "Müller" as "Mu" + U+0308), so a lookup by reference or name asks for both forms."""

from __future__ import annotations

import unicodedata


def stored_forms(text: str) -> list[str]:
    """``text`` composed, then decomposed when that differs (ASCII text has one form)."""
    if text.isascii():
        return [text]
    return list(dict.fromkeys(unicodedata.normalize(form, text) for form in ("NFC", "NFD")))
