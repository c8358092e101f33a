"""What a party heard: an FFT of its recording, and whether a given tone is in it.

Shared by the media end-to-end tests (a plain module next to party.py; tests load it by
path, as pytest's importlib mode puts nothing on sys.path).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SETTLE = 0.5  # seconds of a recording skipped: jitter buffer fill, first packets
BAND = (300.0, 3400.0)  # the telephone band: below and above it is no tone of ours


@dataclass
class Spectrum:
    """What an FFT finds in a recording, past its first `settle` seconds."""

    path: Path
    rms: float
    dominant_hz: float
    freqs: np.ndarray[Any, np.dtype[np.float64]]
    magnitude: np.ndarray[Any, np.dtype[np.float64]]

    @classmethod
    def of(cls, path: Path, settle: float = SETTLE) -> Spectrum:
        with wave.open(str(path)) as recording:
            rate = recording.getframerate()
            assert recording.getsampwidth() == 2 and recording.getnchannels() == 1
            raw = recording.readframes(recording.getnframes())
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64)[int(settle * rate) :]
        assert len(samples) >= rate, f"{path.name}: only {len(samples) / rate:.2f} s recorded"
        magnitude = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        freqs = np.fft.rfftfreq(len(samples), 1 / rate)
        band = (freqs >= BAND[0]) & (freqs <= BAND[1])
        freqs, magnitude = freqs[band], magnitude[band]
        rms = float(np.sqrt(np.mean(samples**2)))
        return cls(path, rms, float(freqs[np.argmax(magnitude)]), freqs, magnitude)

    def prominence(self, hz: float) -> float:
        """The peak near `hz` over the spectrum's median (the window spreads a tone over a
        few bins)."""
        near = np.abs(self.freqs - hz) <= 5
        median = float(np.median(self.magnitude))
        return float(self.magnitude[near].max()) / median if median > 0 else 0.0

    def hears(self, hz: float) -> bool:
        return (
            self.rms > 100  # digital silence has no tone, whatever its spectrum's shape
            and abs(self.dominant_hz - hz) <= 5
            and self.prominence(hz) >= 10
        )

    def describe(self, *tones: float) -> str:
        at = ", ".join(f"{hz:g} Hz at {self.prominence(hz):.1f}x" for hz in tones)
        return f"{self.path.name}: rms {self.rms:.0f}, dominant {self.dominant_hz:.1f} Hz" + (
            f", {at} the median" if at else ""
        )
