"""A WADO-RS answer written to a file as it arrives: ``multipart/related`` parsed chunk by chunk.

:func:`write_answer` takes the answer's chunks and Content-Type and writes the body of its one part (or
the whole body of a bare ``application/dicom`` answer) to an open file, holding no more than a chunk and
a boundary in memory, and stops at a byte cap. An answer that is not one complete part (no boundary,
cut off before the closing boundary, two instances, another media type) is :class:`AnswerError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.message import Message
from typing import BinaryIO

__all__ = ["AnswerError", "TooLarge", "write_answer"]

#: Bytes the framing of a part may take: the text before the first boundary, the part's headers.
MAX_FRAMING = 64 * 1024


class AnswerError(ValueError):
    """The answer is not one complete DICOM part (one line; the caller names the instance)."""


class TooLarge(AnswerError):
    """The answer's DICOM body is larger than the cap."""


def write_answer(
    chunks: Iterable[bytes], content_type: str, out: BinaryIO, limit: int, declared: int | None = None
) -> int:
    """Write the DICOM body of an answer to ``out``; returns its size in bytes.

    ``declared`` is the answer's Content-Length, if known: one larger than ``limit`` and the framing
    is refused before a byte is read. Raises :class:`TooLarge` past ``limit`` bytes of body.
    """
    msg = Message()
    msg["Content-Type"] = content_type
    media, boundary = msg.get_content_type(), msg.get_param("boundary")
    if declared is not None and declared > limit + 2 * MAX_FRAMING:
        raise TooLarge(f"larger than the limit of {limit:,} bytes (Content-Length: {declared:,} bytes)")
    if media == "application/dicom" or (media == "multipart/related" and not isinstance(boundary, str)):
        return _copy(chunks, out, limit)  # a bare instance (also a multipart answer without a boundary)
    if media != "multipart/related" or not isinstance(boundary, str):
        raise AnswerError(f"media type {media!r}, not multipart/related or application/dicom")
    return _one_part(chunks, boundary.encode("latin-1"), out, limit)


def _copy(chunks: Iterable[bytes], out: BinaryIO, limit: int) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"larger than the limit of {limit:,} bytes")
        out.write(chunk)
    return size


def _one_part(chunks: Iterable[bytes], boundary: bytes, out: BinaryIO, limit: int) -> int:
    """The body of the one part of a multipart answer (RFC 2046: preamble, parts, closing boundary)."""
    delimiter = b"\r\n--" + boundary
    buf = bytearray(b"\r\n")  # so that a boundary at the very start is found as a delimiter
    state, size, parts, epilogue = "preamble", 0, 0, 0
    for chunk in chunks:
        if state == "closed":  # read on, so that the connection can be reused, but keep nothing
            epilogue += len(chunk)
            if epilogue > MAX_FRAMING:
                break
            continue
        buf += chunk
        while True:
            if state == "preamble":
                at = buf.find(delimiter)
                if at < 0:
                    if len(buf) > MAX_FRAMING:
                        raise AnswerError("no multipart boundary where the answer starts")
                    break
                del buf[: at + len(delimiter)]
                state = "delimiter"
            elif state == "delimiter":  # after a boundary: '--' closes, else a part's headers follow
                if len(buf) < 2:
                    break
                if buf[:2] == b"--":
                    if parts == 0:
                        raise AnswerError("the answer holds no instance")
                    state = "closed"
                    buf.clear()
                    break
                if parts == 1:
                    raise AnswerError("the answer holds more than one instance")
                state = "headers"
            elif state == "headers":  # the rest of the boundary line, the headers, a blank line
                at = buf.find(b"\r\n\r\n")
                if at < 0:
                    if len(buf) > MAX_FRAMING:
                        raise AnswerError("a part's headers never end")
                    break
                del buf[: at + 4]
                state = "body"
            else:  # the body, up to the next delimiter; its possible start stays in buf
                at = buf.find(delimiter)
                end = at if at >= 0 else max(0, len(buf) - len(delimiter) + 1)
                size += end
                if size > limit:
                    raise TooLarge(f"larger than the limit of {limit:,} bytes")
                out.write(buf[:end])
                if at < 0:
                    del buf[:end]
                    break
                del buf[: end + len(delimiter)]
                parts, state = 1, "delimiter"
    if state != "closed":
        raise AnswerError("answer cut off: no closing boundary")
    return size
