"""Converting a vendor's raw audio to the PCM the browser plays: μ-law decoding and sample-rate conversion."""

from __future__ import annotations

import sys
from array import array


def _ulaw_table() -> array[int]:
    table = array("h")
    for byte in range(256):
        u = ~byte & 0xFF
        magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
        table.append(0x84 - magnitude if u & 0x80 else magnitude - 0x84)
    return table


_ULAW = _ulaw_table()


def ulaw_to_pcm(data: bytes) -> bytes:
    """G.711 μ-law bytes (what `ulaw_8000` carries) to s16le samples."""
    samples = array("h", (_ULAW[b] for b in data))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


class Resampler:
    """s16le mono from `source` Hz to `target` Hz by linear interpolation, continuous across chunks.

    Speech upsampled this way (16 kHz → 24 kHz, the common case) sounds the same as the original;
    downsampling applies no low-pass filter, so configure the vendor to a rate at or below the target.
    """

    def __init__(self, source: int, target: int) -> None:
        self.source, self.target = source, target
        self._step = source / target
        self._position = 0.0  # of the next output sample, in input samples after `_last`
        self._last: int | None = None  # the previous chunk's final sample, the left end of the next gap
        self._odd = b""  # half a sample left over from a chunk split mid-sample

    @property
    def passthrough(self) -> bool:
        return self.source == self.target

    def convert(self, pcm: bytes) -> bytes:
        pcm, self._odd = self._odd + pcm, b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if self.passthrough or not pcm:
            return pcm
        samples = array("h")
        samples.frombytes(pcm)
        if sys.byteorder == "big":
            samples.byteswap()
        points = samples if self._last is None else array("h", [self._last]) + samples
        out = array("h")
        position, step, end = self._position, self._step, len(points) - 1
        while position < end:
            index = int(position)
            left = points[index]
            out.append(round(left + (points[index + 1] - left) * (position - index)))
            position += step
        self._position, self._last = position - end, points[-1]
        if sys.byteorder == "big":
            out.byteswap()
        return out.tobytes()
