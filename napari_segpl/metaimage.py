"""A MetaImage (.mha, .mhd) checked before ITK reads it.

MetaIO prints its reasons for a damaged file itself (several lines on standard error, from C++,
past Python) and reads a bad compressed stream as garbage without failing, so a damaged file
is found here first and refused in one line. Only the header fields that decide the voxel
data's size are read; any layout this does not judge is left to ITK.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path
from typing import BinaryIO

#: One header line, ``Key = Value``; ITK writes metadata keys such as ``0008|0060`` too.
_FIELD = re.compile(rb"\s*([^=\r\n]+?)[ \t]*=[ \t]*([^\r\n]*)(?:\r?\n|\Z)")
#: Bytes a voxel takes per ElementType (MET_LONG's differs by platform: left to ITK).
_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
              "MET_UINT": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}  # fmt: skip
_HEADER_AT_MOST = 1 << 16
_READ, _INFLATE = 1 << 16, 1 << 20  # bytes read, and inflated, at a time: fastest measured


def metaimage_damage(path: Path) -> str | None:
    """Why a MetaImage (.mha, .mhd) cannot be read whole, found before ITK reads it: MetaIO
    prints its reasons in several lines, and reads a bad compressed stream as garbage without
    failing. None: nothing wrong seen, or a layout (a file list, text voxels) left to ITK."""
    if path.suffix.lower() not in (".mha", ".mhd"):
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_AT_MOST)
            fields, end = _header(head)
            if "ElementDataFile" in fields:
                return _data_damage(path, fh, fields, end)
    except OSError:
        return None  # ITK says why it cannot open it
    except ValueError as exc:
        return f"a damaged MetaImage header ({exc})"
    cut = fields and len(head) < _HEADER_AT_MOST and b"\n" not in head[end:]
    return "a MetaImage header cut short (no ElementDataFile)" if cut else None


def _header(head: bytes) -> tuple[dict[str, str], int]:
    """The header's fields up to ElementDataFile, and where its line ends (the data, if LOCAL)."""
    fields, pos = {}, 0
    while pos < len(head) and (match := _FIELD.match(head, pos)):
        key, value = (group.decode("latin-1").strip() for group in match.groups())
        fields[key], pos = value, match.end()
        if key == "ElementDataFile":
            break
    return fields, pos


def _true(fields: dict[str, str], key: str) -> bool:
    """A MetaIO flag: it reads only the first letter."""
    return fields.get(key, "")[:1] in ("T", "t", "1")


def _data_damage(path: Path, fh: BinaryIO, fields: dict[str, str], end: int) -> str | None:
    """Voxel data shorter than the header says, a missing data file, a bad zlib stream."""
    source = fields["ElementDataFile"]
    if not _true(fields, "BinaryData") or "HeaderSize" in fields:
        return None  # voxels as text, or data at an offset: left to ITK
    if source.upper().startswith("LIST") or "%" in source:
        return None  # one file a slice
    for key in ("NDims", "DimSize", "ElementType"):
        if not fields.get(key):
            raise ValueError(f"no {key}")
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        if len(dims) != int(fields["NDims"]) or min(dims) < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"DimSize {fields['DimSize']} for NDims {fields['NDims']}") from None
    channels = fields.get("ElementNumberOfChannels", "1")
    if fields["ElementType"] not in _MET_BYTES or not channels.isdigit():
        return None  # ITK names a type it does not know
    need = _MET_BYTES[fields["ElementType"]] * int(channels) * math.prod(dims)
    if source not in ("LOCAL", "Local", "local"):  # as MetaIO spells it
        data = path.parent / source
        if not data.is_file():
            return f"the data file {source} it names is missing"
        fh, end = data.open("rb"), 0
    with fh:
        have = fh.seek(0, 2) - end
        if not _true(fields, "CompressedData"):
            return None if have >= need else f"a truncated MetaImage: {have} of {need} bytes"
        fh.seek(end)
        return _inflate_damage(fh, need)


def _inflate_damage(fh: BinaryIO, need: int) -> str | None:
    """Inflate the voxel data without keeping it: MetaIO fills a bad stream's image with
    garbage and reads on. Costs one more pass over compressed data, not its memory."""
    inflate, got = zlib.decompressobj(zlib.MAX_WBITS | 32), 0  # zlib or gzip header
    try:
        while not inflate.eof and got <= need:
            chunk = inflate.unconsumed_tail or fh.read(_READ)  # b"": what zlib still holds
            out = len(inflate.decompress(chunk, _INFLATE))
            if not (chunk or out):
                break
            got += out
    except zlib.error:
        pass  # as for a stream cut short: the bytes inflated so far are told
    if not inflate.eof or got != need:
        return f"a truncated or damaged compressed MetaImage: {got} of {need} bytes inflated"
    return None
