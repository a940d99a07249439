"""Still images given where a video is expected, told from the file's own bytes (not its name).

FFmpeg opens a PNG, JPEG, BMP, WebP, TIFF or one-picture GIF as a one-frame "video"; a model would
then score a picture with no motion as if it were a clip. :func:`still_image` names the format of
such a file so that :func:`~videozoo.io.open_video` can refuse it. Files with several pictures are
videos and are left alone: an animated GIF, an animated PNG (APNG), an animated WebP, and a
Motion-JPEG stream (JPEG pictures one after another).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

# Bytes read from the start of a file for the formats decided by their header.
_HEAD = 64 * 1024
# Biggest JPEG looked through for a second picture: beyond it, a JPEG file is taken for a stream.
_JPEG_SCAN = 64 * 1024 * 1024


def still_image(path: str | os.PathLike) -> str | None:
    """The format of the still image at ``path`` ("PNG", "JPEG", "BMP", "WebP", "TIFF", "GIF"), or
    None when it is not one (a video, an animated image, anything else, or a file that cannot be read:
    the decoder then says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                return None if _png_animated(head) else "PNG"
            if head.startswith(b"\xff\xd8\xff"):
                return None if _jpeg_has_more_pictures(f) else "JPEG"
            if head[:6] in (b"GIF87a", b"GIF89a"):
                return None if _gif_pictures(f) > 1 else "GIF"
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return None if _webp_animated(head) else "WebP"
            if head.startswith(b"BM") and len(head) >= 18:
                dib = struct.unpack_from("<I", head, 14)[0]
                return "BMP" if dib in (12, 40, 52, 56, 64, 108, 124) else None
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return "TIFF"
    except OSError:
        return None
    return None


def _png_animated(head: bytes) -> bool:
    """An APNG declares its frames (`acTL`) before the first picture data (`IDAT`)."""
    pos = 8
    while pos + 8 <= len(head):
        length, kind = struct.unpack_from(">I4s", head, pos)
        if kind == b"acTL":
            frames = struct.unpack_from(">I", head, pos + 8)[0] if pos + 12 <= len(head) else 2
            return frames > 1
        if kind == b"IDAT":
            return False
        pos += 12 + length
    return False


def _webp_animated(head: bytes) -> bool:
    """The extended header (`VP8X`) holds an animation flag (bit 1 of its first byte)."""
    return head[12:16] == b"VP8X" and len(head) > 20 and bool(head[20] & 0x02)


def _jpeg_has_more_pictures(f: BinaryIO) -> bool:
    """Whether another JPEG picture follows the first one's end (a Motion-JPEG stream).

    The segments before the picture data are skipped by their lengths (an EXIF thumbnail inside
    them is no second picture); in the entropy-coded data a 0xFF byte is always followed by 0x00 or
    a marker, so the first 0xFF 0xD9 after it is the picture's end.
    """
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return False  # damaged: the decoder will say so
        if marker[1] == 0xFF:  # fill byte before a marker
            f.seek(-1, 1)
            continue
        if marker[1] == 0xDA:  # start of scan: the picture data follows its header
            break
        if marker[1] in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        size = f.read(2)
        if len(size) < 2:
            return False
        f.seek(struct.unpack(">H", size)[0] - 2, 1)
    scanned, carry = 0, b""
    while scanned < _JPEG_SCAN:
        chunk = f.read(1 << 20)
        if not chunk:
            return False
        data = carry + chunk
        end = data.find(b"\xff\xd9")
        if end >= 0:
            rest = data[end + 2 :] + f.read(16)
            return rest.lstrip(b"\x00\r\n\t ").startswith(b"\xff\xd8")
        carry, scanned = data[-1:], scanned + len(chunk)
    return True  # far longer than any one picture: a stream of them


def _gif_pictures(f: BinaryIO, *, enough: int = 2) -> int:
    """How many pictures a GIF holds, counted up to ``enough`` by walking its blocks."""
    f.seek(10)  # the signature (6 bytes), then the screen's width and height (2 + 2)
    packed = f.read(1)
    if not packed:
        return 0
    f.seek(13)  # past the background colour and aspect bytes
    if packed[0] & 0x80:  # a global colour table of 3 * 2^(n+1) bytes
        f.seek(3 * (2 << (packed[0] & 0x07)), 1)
    pictures = 0
    while pictures < enough:
        introducer = f.read(1)
        if not introducer or introducer == b"\x3b":  # the end (or a cut file)
            break
        if introducer == b"\x21":  # an extension: its label, then sub-blocks
            f.seek(1, 1)
        elif introducer == b"\x2c":  # a picture: its descriptor, its colour table, its data's sub-blocks
            descriptor = f.read(9)
            if len(descriptor) < 9:
                break
            if descriptor[8] & 0x80:
                f.seek(3 * (2 << (descriptor[8] & 0x07)), 1)
            f.seek(1, 1)  # the LZW minimum code size
            pictures += 1
        else:
            break  # not a GIF block: the decoder will say what is wrong
        while True:  # sub-blocks: a length byte, that many bytes, until a length of 0
            size = f.read(1)
            if not size or size[0] == 0:
                break
            f.seek(size[0], 1)
    return pictures
