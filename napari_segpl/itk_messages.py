"""SimpleITK's exceptions reduced to one line a user can act on.

ITK's text runs over several lines: where in ITK's source it was thrown, the object's address,
and for NRRD a chain of ``[nrrd]`` calls whose last one holds the reason. MetaImage prints its
reason on standard error (from C++, past Python) and leaves a stale ``errno`` text in the
exception, so ``metaimage.metaimage_damage`` finds a damaged MetaImage before ITK reads it.
"""

from __future__ import annotations

import re

_PREFIX = re.compile(r"^(s?itk::|ITK )ERROR: (\w+\(0x[0-9a-fA-F]+\): )?")
_NRRD_CALL = re.compile(r"^\[nrrd\] \w+: ?")


def itk_reason(exc: BaseException) -> str:
    """The reason in ``exc`` (a SimpleITK read error) in one line of at most 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception thrown in SimpleITK")]
    nrrd = [_NRRD_CALL.sub("", line) for line in lines if line.startswith("[nrrd]")]
    nrrd = [line for line in nrrd if line and not line.startswith("trouble")]
    text = " ".join(lines)
    if nrrd:
        reason = nrrd[-1]
    elif "Unable to determine ImageIO reader" in text:
        reason = "not an image file SimpleITK can read (empty, damaged or another format)"
    elif "MetaImageIO" in text and "Reason:" in text:  # errno is stale: the file exists
        reason = "a damaged or truncated MetaImage, or a data file it names is missing"
    else:
        reason = _PREFIX.sub("", lines[-1]) if lines else ""
    return (reason or type(exc).__name__)[:200]
