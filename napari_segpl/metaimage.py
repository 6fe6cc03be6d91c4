"""A MetaImage (.mha, .mhd) checked before ITK reads it.

MetaIO prints its reasons for a damaged file itself (several lines on standard error, from C++,
past Python) and reads a bad compressed stream as garbage without failing, so a damaged file
is found here first and refused in one line. Only the header fields that decide the voxel
data's size are read; any layout this does not judge is left to ITK.

Checking compressed voxels means inflating them all (a bad stream shows only at its end, in
the checksum), so the check keeps what it inflated where the layout is plain (one channel, a
type numpy has): the reader takes those voxels and ITK reads the header only, so the data are
inflated once, not twice (``checked_metaimage``).
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: One header line, ``Key = Value``; ITK writes metadata keys such as ``0008|0060`` too.
_FIELD = re.compile(rb"\s*([^=\r\n]+?)[ \t]*=[ \t]*([^\r\n]*)(?:\r?\n|\Z)")
#: The numpy type of each ElementType, little-endian (MET_LONG's size differs by platform: left
#: to ITK); its size is the bytes a voxel takes.
_MET_TYPES = {"MET_CHAR": "<i1", "MET_UCHAR": "<u1", "MET_SHORT": "<i2", "MET_USHORT": "<u2",
              "MET_INT": "<i4", "MET_UINT": "<u4", "MET_LONG_LONG": "<i8", "MET_ULONG_LONG": "<u8",
              "MET_FLOAT": "<f4", "MET_DOUBLE": "<f8"}  # fmt: skip
_MET_BYTES = {name: np.dtype(code).itemsize for name, code in _MET_TYPES.items()}
_MSB_KEYS = ("BinaryDataByteOrderMSB", "ElementByteOrderMSB")  # MetaIO reads either
_HEADER_AT_MOST = 1 << 16
_READ, _INFLATE = 1 << 16, 1 << 20  # bytes read, and inflated, at a time: fastest measured


def metaimage_damage(path: Path) -> str | None:
    """Why a MetaImage (.mha, .mhd) cannot be read whole, found before ITK reads it: MetaIO
    prints its reasons in several lines, and reads a bad compressed stream as garbage without
    failing. None: nothing wrong seen, or a layout (a file list, text voxels) left to ITK."""
    return checked_metaimage(path, keep=False)[0]


def checked_metaimage(path: Path, keep: bool = True) -> tuple[str | None, np.ndarray | None]:
    """``metaimage_damage``'s answer, and with ``keep`` the compressed voxels the check inflated
    (in ITK's array order, z y x; native byte order) where their layout is plain, for the reader
    to use instead of ITK inflating them again; None where ITK is to read the voxels."""
    if path.suffix.lower() not in (".mha", ".mhd"):
        return None, None
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_AT_MOST)
            fields, end = _header(head)
            if "ElementDataFile" in fields:
                return _data_damage(path, fh, fields, end, keep)
    except OSError:
        return None, None  # ITK says why it cannot open it
    except ValueError as exc:
        return f"a damaged MetaImage header ({exc})", None
    cut = fields and len(head) < _HEADER_AT_MOST and b"\n" not in head[end:]
    return ("a MetaImage header cut short (no ElementDataFile)" if cut else None), None


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


def _data_damage(
    path: Path, fh: BinaryIO, fields: dict[str, str], end: int, keep: bool
) -> tuple[str | None, np.ndarray | None]:
    """Voxel data shorter than the header says, a missing data file, a bad zlib stream; and the
    voxels inflated, with ``keep``, where the layout is plain."""
    source = fields["ElementDataFile"]
    if not _true(fields, "BinaryData") or "HeaderSize" in fields:
        return None, None  # voxels as text, or data at an offset: left to ITK
    if source.upper().startswith("LIST") or "%" in source:
        return None, None  # one file a slice
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
        return None, None  # ITK names a type it does not know
    need = _MET_BYTES[fields["ElementType"]] * int(channels) * math.prod(dims)
    if source not in ("LOCAL", "Local", "local"):  # as MetaIO spells it
        data = path.parent / source
        if not data.is_file():
            return f"the data file {source} it names is missing", None
        fh, end = data.open("rb"), 0
    with fh:
        have = fh.seek(0, 2) - end
        if not _true(fields, "CompressedData"):
            cut = f"a truncated MetaImage: {have} of {need} bytes"
            return (None if have >= need else cut), None
        fh.seek(end)
        order = {_true(fields, key) for key in _MSB_KEYS if key in fields}
        plain = keep and int(channels) == 1 and need > 0 and len(order) < 2  # MSB flags agree
        into = bytearray(need) if plain else None
        damage = _inflate_damage(fh, need, into)
    if damage or into is None:
        return damage, None
    dtype = np.dtype(_MET_TYPES[fields["ElementType"]])
    voxels = np.frombuffer(into, dtype.newbyteorder(">" if order == {True} else "<"))
    if not voxels.dtype.isnative:  # swapped in place: no second copy of the voxels
        voxels = voxels.byteswap(inplace=True).view(voxels.dtype.newbyteorder("="))
    return None, voxels.reshape(dims[::-1])


def _inflate_damage(fh: BinaryIO, need: int, into: bytearray | None = None) -> str | None:
    """Inflate the voxel data, chunk by chunk, into ``into`` (``need`` bytes) or counted without
    being kept: MetaIO fills a bad stream's image with garbage and reads on. Besides ``into``,
    memory stays a chunk's, however large the data."""
    inflate, got = zlib.decompressobj(zlib.MAX_WBITS | 32), 0  # zlib or gzip header
    view = memoryview(into) if into is not None else None
    try:
        while not inflate.eof and got <= need:
            chunk = inflate.unconsumed_tail or fh.read(_READ)  # b"": what zlib still holds
            out = inflate.decompress(chunk, _INFLATE)
            if not (chunk or out):
                break
            if view is not None and got + len(out) <= need:
                view[got : got + len(out)] = out
            got += len(out)
    except zlib.error:
        pass  # as for a stream cut short: the bytes inflated so far are told
    if not inflate.eof or got != need:
        return f"a truncated or damaged compressed MetaImage: {got} of {need} bytes inflated"
    return None
