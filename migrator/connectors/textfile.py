"""Text files whose bytes are not all what they claim: which encoding, and what to say
when some bytes do not decode.

A Windows export often carries one row typed in cp1252 ("Müller") inside a UTF-8 file.
A strict decoder throws away the whole chunk it was decoding, and with it dozens of
rows around the bad one. Instead, the reader decodes with ``MARK``: each byte that does
not decode becomes a lone surrogate (U+DC00 + byte), which no decoder produces for real
text, so the row that holds it can be found after parsing and failed alone, while the
rows around it, and every line number, stay exactly as they are. The handler counts
what it marked for the reader decoding on this thread, so a reader looks for marks only
while some are still unaccounted for: the clean path costs nothing.
"""
from __future__ import annotations

import codecs
import re
import threading
from pathlib import Path
from typing import Any

MARK = "migrator-mark"
AUTO = "auto"

_MARKED = re.compile("[\udc00-\udcff]")
_local = threading.local()

# Longest BOM first: UTF-32-LE's BOM starts with UTF-16-LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class Marks:
    """What one reader's decoder marked and its parser has not yet found in a row."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0

    def decoding_here(self) -> None:
        """Call before reading on this thread: the handler then counts for this reader."""
        _local.marks = self


def _mark(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    marks = getattr(_local, "marks", None)
    if marks is not None:
        marks.pending += len(bad)
    return "".join([chr(0xDC00 + b) for b in bad]), exc.end


codecs.register_error(MARK, _mark)


def count_marks(text: str) -> int:
    return len(_MARKED.findall(text))


def unmark(text: str, encoding: str) -> bytes:
    """The bytes ``text`` was decoded from (marks back to the bytes they stand for)."""
    out = bytearray()
    for piece in re.split("([\udc00-\udcff]+)", text):
        if piece and _MARKED.match(piece):
            out += bytes(ord(c) - 0xDC00 for c in piece)
        elif piece:
            out += piece.encode(_plain(encoding), "replace")
    return bytes(out)


def _plain(encoding: str) -> str:
    """A codec that turns text back into the bytes ``encoding`` decoded (no BOM)."""
    name = codecs.lookup(encoding).name
    return {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(name, name)


def codec_name(encoding: str) -> str:
    """How a person calls ``encoding``: utf-8 (with or without BOM), utf-16, cp1252."""
    name = codecs.lookup(encoding).name
    return "utf-8" if name == "utf-8-sig" else name


def choose_encoding(path: Path, setting: Any, where: str) -> str:
    """The encoding to read ``path`` with: an explicit setting wins (a UTF-8 BOM is still
    skipped); else a BOM says UTF-8, UTF-16 or UTF-32; else UTF-8."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    name = str(setting or AUTO).strip()
    if name.lower() != AUTO:
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            from ..errors import JobError
            raise JobError(f"{where}: unknown encoding {name!r} (e.g. utf-8, cp1252, latin-1, utf-16)") from None
        return "utf-8-sig" if codec == "utf-8" and head.startswith(codecs.BOM_UTF8) else name
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    return "utf-8"


def guess_encoding(sample: bytes) -> str | None:
    """charset-normalizer's reading of ``sample``. Short samples (a row) fit several
    Windows code pages equally; when cp1252 reads them the same, it is named, being what
    Western Windows exports are."""
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        return None
    try:
        if sample.decode("cp1252") == str(best):
            return "cp1252"
    except UnicodeDecodeError:
        pass
    return best.encoding


def bad_text(raw: bytes, guess: str | None) -> str:
    """``b'M\\xfcller'`` and, when ``guess`` decodes it, how it reads in that encoding."""
    shown = repr(raw[:60])
    if guess:
        try:
            return f"{shown}, which reads as {raw[:60].decode(guess)!r} in {guess}"
        except (UnicodeDecodeError, LookupError):
            pass
    return shown
