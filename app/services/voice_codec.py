"""Speech samples to compact audio: Opus in Ogg through libsndfile, which the
PyPI wheel of ``soundfile`` ships (no system install). About 4-5 KB a second."""

from __future__ import annotations

import io

from app.errors import ConfigError

# Opus takes 8, 12, 16, 24 or 48 kHz; eSpeak speaks at 22.05. At 16 kHz (wideband) the
# files are a third smaller than at 24 and cost the same to encode.
OPUS_RATE = 16_000
MIME = "audio/ogg"
SUFFIX = ".ogg"


def pcm_to_ogg_opus(samples: bytes, rate: int) -> bytes:
    """16-bit mono PCM as an Ogg Opus file."""
    import numpy as np

    try:
        import soundfile
    except ImportError:
        raise ConfigError("Audio encoding needs the PyPI package soundfile") from None
    audio = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32768.0
    if rate != OPUS_RATE and len(audio) > 1:
        # Linear resampling is enough for speech that has nothing above 11 kHz.
        count = round(len(audio) * OPUS_RATE / rate)
        audio = np.interp(
            np.linspace(0, len(audio) - 1, count), np.arange(len(audio)), audio
        ).astype(np.float32)
    if len(audio) == 0:
        audio = np.zeros(OPUS_RATE // 10, dtype=np.float32)  # a tenth of silence, still valid
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, OPUS_RATE, format="OGG", subtype="OPUS")
    return buffer.getvalue()
