"""Byte ranges of stored reply audio, read from whichever storage holds it: a local folder or an S3 bucket.

The audio endpoint serves the range itself rather than redirecting to a presigned bucket URL: the
page, the player's fetch and the Content-Security-Policy stay same-origin, the bucket stays private
with no CORS rules, and ownership is checked on every request (a presigned URL works for anyone who
has it until it expires). A range is one ranged GET on the bucket, never a download of the object.
"""

from __future__ import annotations

from typing import Any

from django.core.files.storage import Storage


class StoredAudio:
    """One stored file opened for ranged reads; opening it costs one metadata request on a bucket."""

    def __init__(self, storage: Storage, name: str) -> None:
        self._file: Any = storage.open(name, "rb")  # FileNotFoundError when it is gone
        # django-storages' S3File downloads the whole object on its first read; its boto3 object reads a range.
        self._object = getattr(self._file, "obj", None)
        self.size: int = self._file.size

    def read(self, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive); closes the file."""
        try:
            if last < first:  # an empty file
                return b""
            if self._object is not None:
                body = self._object.get(Range=f"bytes={first}-{last}")["Body"]
                try:
                    return bytes(body.read())
                finally:
                    body.close()
            self._file.seek(first)
            return bytes(self._file.read(last - first + 1))
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()
