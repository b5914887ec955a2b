"""eSpeak NG through ctypes, from the PyPI package ``espeakng-loader`` (it ships
``libespeak-ng.so`` and ``espeak-ng-data``: no system install).

The library keeps one voice and one callback per process, so one lock makes
every synthesis a critical section; ctypes releases the GIL while it runs, so
a synthesis in a thread does not stall the event loop.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import ConfigError

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples come back through the callback
_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
INSTALL_HINT = "Offline voices need the PyPI package espeakng-loader: pip install espeakng-loader"


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    """An eSpeak NG voice: language + variant, pitch and range 0-100, words/minute."""

    variant: str
    pitch: int
    range: int
    rate: int
    language: str = "en"

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}"


@dataclass(frozen=True, slots=True)
class PCM:
    """16-bit mono samples."""

    samples: bytes
    rate: int
    first_audio_s: float  # from the call to the first samples
    synth_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / 2 / self.rate if self.rate else 0.0


class EspeakEngine:
    """The library, loaded on first use. Get it with ``espeak_engine()``: eSpeak NG
    is initialised once per process (a second ``espeak_Initialize`` crashes it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib: Any = None
        self._rate = 0
        self._callback: Any = None
        self._sink: Callable[[bytes], None] | None = None

    def _load(self) -> Any:
        if self._lib is not None:
            return self._lib
        try:
            import espeakng_loader
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, data, _DONT_EXIT)
        if rate <= 0:
            raise ConfigError(f"eSpeak NG did not start (code {rate}). {INSTALL_HINT}")
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )

        def on_samples(wav: Any, count: int, events: Any) -> int:
            if wav and count > 0 and self._sink is not None:
                self._sink(ctypes.string_at(wav, count * 2))
            return 0

        self._callback = callback_type(on_samples)  # kept: the library holds a pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib, self._rate = lib, rate
        return lib

    def synthesize(self, text: str, voice: EspeakVoice) -> PCM:
        """Speak ``text`` in ``voice`` (blocking: call it in a thread)."""
        chunks: list[bytes] = []
        first: list[float] = []
        with self._lock:
            lib = self._load()
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                lib.espeak_SetVoiceByName(voice.language.encode())
            lib.espeak_SetParameter(_RATE, voice.rate, 0)
            lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
            lib.espeak_SetParameter(_RANGE, voice.range, 0)
            lib.espeak_SetParameter(_VOLUME, 100, 0)
            started = time.perf_counter()

            def sink(chunk: bytes) -> None:
                if not first:
                    first.append(time.perf_counter() - started)
                chunks.append(chunk)

            self._sink = sink
            encoded = text.encode()
            try:
                lib.espeak_Synth(
                    encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
            finally:
                self._sink = None
            elapsed = time.perf_counter() - started
        return PCM(b"".join(chunks), self._rate, first[0] if first else elapsed, elapsed)


_ENGINE_LOCK = threading.Lock()
# The one module-level object of the app, on purpose: it stands for the C library's
# own process-wide state (one voice, one callback), which cannot be had twice.
_ENGINE: list[EspeakEngine] = []


def espeak_engine() -> EspeakEngine:
    """The process's eSpeak NG engine (every Services of the process shares it)."""
    with _ENGINE_LOCK:
        if not _ENGINE:
            _ENGINE.append(EspeakEngine())
        return _ENGINE[0]
