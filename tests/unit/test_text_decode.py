"""decode_text: UTF-8 (with or without BOM) and UTF-16/32 read as text; anything else a clear error."""

from __future__ import annotations

import pytest

from accel.cluster.text_decode import TextDecodeError, decode_text

TEXT = "apiVersion: v1\nkind: List\nitems: []  # café\n"


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"),
    b"\xef\xbb\xbf" + TEXT.encode("utf-8"),
    TEXT.encode("utf-16"),  # with BOM, as PowerShell's `>` writes
    b"\xfe\xff" + TEXT.encode("utf-16-be"),
    TEXT.encode("utf-16-le"),  # no BOM: recognised by the NUL after every ASCII character
    TEXT.encode("utf-16-be"),
    TEXT.encode("utf-32"),
], ids=["utf8", "utf8-bom", "utf16-bom", "utf16be-bom", "utf16le", "utf16be", "utf32-bom"])
def test_text_in_common_encodings_is_read(data: bytes) -> None:
    assert decode_text(data, "f.yaml") == TEXT


def test_binary_and_other_encodings_name_the_file_and_the_fix() -> None:
    with pytest.raises(TextDecodeError, match=r"^f.yaml: is a binary file .*NUL"):
        decode_text(b"\x1f\x8b\x08\x00\x00", "f.yaml")
    with pytest.raises(TextDecodeError, match=r"^f.yaml: byte 3 \(0xe9\) is not UTF-8.*iconv"):
        decode_text("caf\xe9".encode("latin-1"), "f.yaml")
    with pytest.raises(TextDecodeError, match=r"UTF-16-LE byte-order mark"):
        decode_text(b"\xff\xfe\x00\xd8", "f.yaml")  # a lone surrogate after the mark
