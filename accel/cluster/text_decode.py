"""Turn the bytes of a user's snapshot or policy file into text, or say clearly why not.

Files reach us from many editors and shells: PowerShell's `>` writes UTF-16 with a byte-order
mark, Windows Notepad used to prefix UTF-8 with one, and now and then someone passes a binary
(a `.tar.gz`, a kubeconfig with an embedded key in DER form). UTF-8 with or without a BOM and
UTF-16/UTF-32 with a BOM are read as what they are; anything else that is not valid UTF-8 gets an
error naming the file, what is wrong and the command that converts it.
"""

from __future__ import annotations

import codecs

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class TextDecodeError(ValueError):
    """The bytes are not text we can read; the message names the source and how to fix it."""


def decode_text(data: bytes, source: str) -> str:
    """The text of `data` (UTF-8, UTF-8 with BOM, UTF-16/32 with BOM); `TextDecodeError` otherwise.

    `source` names the input (a path) in the error message.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise TextDecodeError(
                    f"{source}: starts with a {encoding.upper()} byte-order mark but byte "
                    f"{exc.start + len(bom)} "
                    f"is not {encoding.upper()}; save it as UTF-8 (e.g. `iconv -f {encoding.upper()} -t "
                    "UTF-8`)"
                ) from None
    utf16 = _bomless_utf16(data)
    if utf16 is not None:
        try:
            return data.decode(utf16)
        except UnicodeDecodeError:
            pass  # not UTF-16 after all: report it as binary below
    if b"\x00" in data:
        raise TextDecodeError(
            f"{source}: is a binary file (it contains NUL bytes), not YAML or JSON text; "
            "pass the YAML/JSON file itself (e.g. `kubectl get ... -o yaml > file.yaml`)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextDecodeError(
            f"{source}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8; the file is in another "
            "encoding: save it as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8 in.yaml > out.yaml`, or in "
            "PowerShell `Out-File -Encoding utf8`)"
        ) from None


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM, recognised by YAML's ASCII text: every other byte is NUL.

    Only claimed when the first bytes are ASCII characters interleaved with NULs, the pattern no
    UTF-8 file and almost no binary shows.
    """
    head = data[:64]
    if len(head) < 4 or len(data) % 2:
        return None
    even, odd = head[0::2], head[1::2]
    if all(b == 0 for b in odd) and all(0 < b < 0x80 for b in even):
        return "utf-16-le"
    if all(b == 0 for b in even) and all(0 < b < 0x80 for b in odd):
        return "utf-16-be"
    return None
