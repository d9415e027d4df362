#!/usr/bin/env python3
"""Render the wavdiff demo clip: a short, original piece of synthesised music.

Everything here is generated from scratch with numpy/scipy (no samples, no
third-party audio), so the resulting file belongs to the wavdiff project and
can be shipped freely.  The output is deterministic: a fixed random seed
drives every bit of noise and "humanisation".

The piece is a 120 BPM loop in A minor over the progression Am - F - C - G:

* pad    - detuned, saw-like chords spread across the stereo field (chorus)
* pluck  - eighth-note arpeggios whose upper harmonics die away quickly
* bass   - eighth-note root/octave line
* lead   - a simple melody with ADSR envelope, delayed vibrato, ping-pong echo
* drums  - sine-sweep kick, tone+noise snare, high-passed noise hi-hats
* master - convolution reverb (synthetic decaying-noise impulse response),
           DC/rumble filter, fade-out, peak normalisation to -1 dBFS

Usage::

    python sample_data/make_sample.py                # -> sample_data/wavdiff_demo.mp3
    python sample_data/make_sample.py --seconds 20 --output /tmp/demo.mp3
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

# ---------------------------------------------------------------------------
# Global musical constants
# ---------------------------------------------------------------------------
SR = 44100                  # sample rate (Hz)
BPM = 120.0                 # tempo
BEAT = 60.0 / BPM           # seconds per quarter note
BAR = 4 * BEAT              # seconds per 4/4 bar
SEED = 20240611             # fixed seed -> identical output on every run
PEAK_DBFS = -1.0            # final peak level

# Chord progression, one chord per bar, as MIDI note numbers (pad voicing).
# Am - F - C - G  (vi - IV - I - V in C major / i - VI - III - VII in A minor)
CHORDS = [
    [57, 60, 64, 69],       # A3 C4 E4 A4
    [57, 60, 65, 69],       # A3 C4 F4 A4   (F major, 1st inversion-ish)
    [55, 60, 64, 67],       # G3 C4 E4 G4
    [55, 59, 62, 67],       # G3 B3 D4 G4
]
BASS_ROOTS = [33, 29, 36, 31]   # A1 F1 C2 G1

# Lead phrases: lists of (start_beat, length_beats, midi) over 4 bars (16 beats),
# the first bar of each phrase being the Am bar.
PHRASE_A = [
    (0, 1, 76), (1, .5, 74), (1.5, .5, 72), (2, 1.5, 69), (3.5, .5, 72),
    (4, 1.5, 72), (5.5, .5, 74), (6, 1, 76), (7, 1, 72),
    (8, 1, 79), (9, .5, 76), (9.5, .5, 74), (10, 2, 76),
    (12, 1, 74), (13, .5, 71), (13.5, .5, 74), (14, 1.5, 79), (15.5, .5, 76),
]
PHRASE_B = [
    (0, .5, 81), (.5, .5, 79), (1, 1, 76), (2, 1, 72), (3, 1, 76),
    (4, 1.5, 77), (5.5, .5, 76), (6, 1, 74), (7, 1, 72),
    (8, .5, 72), (8.5, .5, 74), (9, 1, 76), (10, 1, 79), (11, 1, 76),
    (12, 2, 74), (14, 1, 71), (15, 1, 67),
]
# Sparse, sustained version of the tune for the breakdown.
PHRASE_CALM = [
    (0, 3, 76), (3, 1, 72), (4, 4, 72),
    (8, 3, 79), (11, 1, 76), (12, 4, 74),
]

# Arrangement: which parts play in each bar of a 16-bar cycle (the cycle
# repeats if more music is asked for).  The lead phrase is chosen per 4 bars.
ARRANGEMENT = [
    # bars 0-3: intro -> build (drums & bass come in, snare fill at bar 3)
    {"pad", "pluck"},
    {"pad", "pluck", "hats"},
    {"pad", "pluck", "hats", "kick", "bass"},
    {"pad", "pluck", "hats", "kick", "snare", "bass", "fill"},
    # bars 4-7: full groove with the main tune
    *[{"pad", "pluck", "hats", "kick", "snare", "bass", "lead"}] * 4,
    # bars 8-11: breakdown (no kick), then a build back up
    {"pad", "lead", "pluck"},
    {"pad", "lead", "pluck", "hats"},
    {"pad", "lead", "pluck", "hats", "kick", "bass"},
    {"pad", "lead", "pluck", "hats", "kick", "snare", "bass", "fill"},
    # bars 12-15: full groove, busier hats, second half of the tune
    *[{"pad", "pluck", "hats", "openhats", "kick", "snare", "bass", "lead"}] * 4,
]
PHRASES = [None, PHRASE_A, PHRASE_CALM, PHRASE_B]   # one per 4-bar block


# ---------------------------------------------------------------------------
# Small DSP helpers
# ---------------------------------------------------------------------------
def midi_hz(m: float) -> float:
    """MIDI note number -> frequency in Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((m - 69) / 12.0)


def secs(n: float) -> int:
    """Seconds -> whole number of samples."""
    return int(round(n * SR))


def adsr(n_hold: int, a: float, d: float, s: float, r: float) -> np.ndarray:
    """Linear-attack / exponential-decay ADSR envelope.

    ``n_hold`` is the number of samples the key is held; the release tail of
    ``r`` seconds is appended after it.  a, d, r in seconds, s in 0..1.
    """
    t = np.arange(n_hold) / SR
    env = np.where(t < a, t / max(a, 1e-6),
                   s + (1 - s) * np.exp(-(t - a) / max(d, 1e-6)))
    level = env[-1] if n_hold else 0.0
    tail = level * np.exp(-np.arange(secs(r)) / max(secs(r) / 5, 1))
    return np.concatenate([env, tail])


def harmonic_osc(phase: np.ndarray, amps, f0: float) -> np.ndarray:
    """Sum of harmonics sin(k*phase) with the given amplitudes (k = 1, 2, ...).

    ``f0`` is the (approximate) fundamental; harmonics that would land above
    ~18 kHz are skipped so nothing aliases.
    """
    out = np.zeros_like(phase)
    for k, amp in enumerate(amps, start=1):
        if amp and k * f0 < 18000:
            out += amp * np.sin(k * phase)
    return out


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan law; pan in -1 (left) .. +1 (right)."""
    angle = (pan + 1) * np.pi / 4
    return float(np.cos(angle)), float(np.sin(angle))


def place(bus: np.ndarray, sig: np.ndarray, start: int, pan: float = 0.0,
          gain: float = 1.0) -> None:
    """Mix a mono signal into a stereo bus (shape (2, N)) at ``start``."""
    if start >= bus.shape[1] or start + len(sig) <= 0:
        return
    if start < 0:                      # clip anything before time zero
        sig, start = sig[-start:], 0
    sig = sig[: bus.shape[1] - start]
    gl, gr = pan_gains(pan)
    bus[0, start:start + len(sig)] += gain * gl * sig
    bus[1, start:start + len(sig)] += gain * gr * sig


# ---------------------------------------------------------------------------
# Instruments: each returns a mono note/hit as a numpy array
# ---------------------------------------------------------------------------
def pad_voice(freq: float, dur: float, rng: np.random.Generator) -> np.ndarray:
    """One saw-like pad oscillator: 1/k harmonics, softened by a gentle roll-off,
    with a slow random phase so stacked voices don't start in lock-step."""
    env = adsr(secs(dur), a=0.35, d=0.8, s=0.75, r=0.7)
    t = np.arange(len(env)) / SR
    # very slow pitch drift (~2 cents) adds life to the chorus effect
    drift = 1 + 0.0012 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(freq * drift) / SR + rng.uniform(0, 2 * np.pi)
    amps = [np.exp(-k / 5.0) / k for k in range(1, 13)]
    return env * harmonic_osc(phase, amps, freq)


def pluck(freq: float, dur: float) -> np.ndarray:
    """Plucked string: additive partials whose decay speeds up with partial number."""
    n = secs(dur)
    t = np.arange(n) / SR
    out = np.zeros(n)
    for k in range(1, 9):
        if k * freq > 18000:
            break
        decay = np.exp(-t * (2.5 + 2.2 * k))
        out += (1 / k) * decay * np.sin(2 * np.pi * k * freq * t * (1 + 0.0004 * k))
    attack = np.minimum(t / 0.003, 1)  # 3 ms anti-click attack
    return out * attack


def bass_note(freq: float, dur: float) -> np.ndarray:
    """Round bass: sine sub + a few saw harmonics, punchy envelope."""
    env = adsr(secs(dur), a=0.005, d=0.18, s=0.55, r=0.06)
    t = np.arange(len(env)) / SR
    phase = 2 * np.pi * freq * t
    amps = [1.0, 0.45, 0.25, 0.14, 0.08, 0.05]
    # a short "filter envelope": extra brightness at the very start of the note
    upper = harmonic_osc(phase, [0, 0, 0, 0.3, 0.25, 0.2, 0.15, 0.1], freq)
    bright = 0.25 * np.exp(-t / 0.04) * upper
    return env * (harmonic_osc(phase, amps, freq) + bright)


def lead_note(freq: float, dur: float) -> np.ndarray:
    """Lead synth: triangle-ish tone with delayed vibrato and an ADSR."""
    env = adsr(secs(dur), a=0.015, d=0.15, s=0.7, r=0.18)
    t = np.arange(len(env)) / SR
    vib_depth = 0.005 * np.clip((t - 0.18) / 0.25, 0, 1)   # fades in after 180 ms
    inst_f = freq * (1 + vib_depth * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(inst_f) / SR
    # odd harmonics ~1/k^2 (triangle) plus a touch of 2nd/4th for warmth
    amps = [1.0, 0.12, 1 / 9, 0.05, 1 / 25, 0, 1 / 49, 0, 1 / 81]
    return env * harmonic_osc(phase, amps, freq)


def kick(rng: np.random.Generator) -> np.ndarray:
    """Kick drum: sine with a fast downward pitch sweep, plus a tiny click."""
    t = np.arange(secs(0.45)) / SR
    f = 48 + 120 * np.exp(-t / 0.03)                       # 168 Hz -> 48 Hz
    body = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.22)
    click = rng.standard_normal(len(t)) * np.exp(-t / 0.002) * 0.3
    return body + click


def snare_tone() -> np.ndarray:
    """Tonal (drum-shell) part of the snare; the noise part is added separately."""
    t = np.arange(secs(0.3)) / SR
    return (np.sin(2 * np.pi * 190 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * np.exp(-t / 0.05)


def noise_burst(rng: np.random.Generator, decay: float, length: float) -> np.ndarray:
    """White noise with an exponential decay (filtered later, on the whole bus)."""
    t = np.arange(secs(length)) / SR
    return rng.standard_normal(len(t)) * np.exp(-t / decay)


# ---------------------------------------------------------------------------
# Effects
# ---------------------------------------------------------------------------
def ping_pong_echo(bus: np.ndarray, delay: float, feedback: float, taps: int) -> np.ndarray:
    """Finite ping-pong delay: each echo alternates sides and gets quieter."""
    out = bus.copy()
    d = secs(delay)
    mono = bus.mean(axis=0)
    for i in range(1, taps + 1):
        channel = 1 if i % 2 else 0    # 1st echo right, 2nd left, 3rd right, ...
        out[channel, i * d:] += (feedback ** i) * mono[: len(mono) - i * d]
    return out


def make_reverb_ir(rng: np.random.Generator, rt60: float = 1.6) -> np.ndarray:
    """Synthetic stereo room: exponentially decaying, darkened noise.

    Independent noise on each side gives a wide, decorrelated tail.
    """
    n = secs(rt60 * 1.1)
    t = np.arange(n) / SR
    env = np.exp(-6.9 * t / rt60)                        # -60 dB at rt60
    ir = rng.standard_normal((2, n)) * env
    # darker tail: high frequencies decay faster in real rooms
    ir = signal.sosfilt(signal.butter(2, 5000, "low", fs=SR, output="sos"), ir, axis=1)
    ir = np.concatenate([np.zeros((2, secs(0.02))), ir], axis=1)   # 20 ms pre-delay
    return ir / np.sqrt(np.sum(ir ** 2) / 2)            # unit energy per side


# ---------------------------------------------------------------------------
# The arrangement
# ---------------------------------------------------------------------------
def render(seconds: float, seed: int = SEED) -> np.ndarray:
    """Render ``seconds`` of music; returns float array of shape (n_samples, 2)."""
    rng = np.random.default_rng(seed)
    n_total = secs(seconds)
    n_bus = n_total + secs(3.0)        # room for release and reverb tails
    n_bars = int(np.ceil(seconds / BAR))

    def bus():
        return np.zeros((2, n_bus))

    pad, plk, bass, lead, kik, snr, snr_noise, hat_noise = (bus() for _ in range(8))

    def at(bar: int, beat: float, jitter: float = 0.0) -> int:
        """Sample index of a beat position, with optional timing jitter (s)."""
        return secs(bar * BAR + beat * BEAT + (rng.uniform(-jitter, jitter) if jitter else 0))

    for bar in range(n_bars):
        parts = ARRANGEMENT[bar % len(ARRANGEMENT)]
        chord = CHORDS[bar % 4]
        root = BASS_ROOTS[bar % 4]

        # --- pad: every chord tone as three detuned voices (L / centre / R)
        if "pad" in parts:
            for note in chord:
                for cents, pan in ((-9, -0.7), (0, 0.0), (9, 0.7)):
                    f = midi_hz(note + cents / 100)
                    place(pad, pad_voice(f, BAR * 0.98, rng), at(bar, 0), pan, 0.04)

        # --- pluck: eighth-note arpeggio an octave above the pad
        if "pluck" in parts:
            order = [0, 1, 2, 3, 2, 1, 2, 3]
            for i, idx in enumerate(order):
                note = chord[idx] + 12
                vel = 0.9 if i % 2 == 0 else 0.65
                vel *= rng.uniform(0.9, 1.05)
                place(plk, pluck(midi_hz(note), 0.9), at(bar, i * 0.5, 0.004),
                      pan=0.45 * np.sin(i * 0.9), gain=0.12 * vel)

        # --- bass: eighth notes, root with an octave jump on the off-beats
        if "bass" in parts:
            pattern = [0, 0, 12, 0, 0, 12, 0, 7] if bar % 2 == 0 else [0, 0, 12, 0, 7, 0, 12, 0]
            for i, interval in enumerate(pattern):
                vel = 1.0 if i % 2 == 0 else 0.75
                place(bass, bass_note(midi_hz(root + 12 + interval), BEAT * 0.42),
                      at(bar, i * 0.5), 0.0, 0.22 * vel)

        # --- lead melody (phrase chosen per 4-bar block)
        phrase = PHRASES[(bar % len(ARRANGEMENT)) // 4]
        if "lead" in parts and phrase is not None:
            first = (bar % 4) * 4                 # phrase beats inside this bar
            for start, length, note in phrase:
                if first <= start < first + 4:
                    place(lead, lead_note(midi_hz(note), length * BEAT * 0.92),
                          at(bar, start - first, 0.003), 0.1, 0.22 * rng.uniform(0.9, 1.0))

        # --- kick: four on the floor
        if "kick" in parts:
            for beat in range(4):
                place(kik, kick(rng), at(bar, beat), 0.0, 0.5)

        # --- snare on beats 2 and 4, optional 16th-note fill in the last beat
        if "snare" in parts:
            for beat in (1, 3):
                s = at(bar, beat, 0.002)
                place(snr, snare_tone(), s, 0.05, 0.40)
                place(snr_noise, noise_burst(rng, 0.09, 0.3), s, 0.05, 0.50)
        if "fill" in parts:
            for i, beat in enumerate(np.arange(3.0, 4.0, 0.25)):
                vel = 0.35 + 0.17 * i                 # crescendo into the next bar
                s = at(bar, beat, 0.002)
                place(snr, snare_tone(), s, 0.05, 0.40 * vel)
                place(snr_noise, noise_burst(rng, 0.07, 0.25), s, 0.05, 0.50 * vel)

        # --- hi-hats: closed on eighths (accented off-beats), open on some off-beats
        if "hats" in parts:
            for i in range(8):
                open_hat = "openhats" in parts and i in (3, 7)
                decay, length = (0.16, 0.5) if open_hat else (0.028, 0.12)
                vel = (1.0 if i % 2 else 0.6) * rng.uniform(0.8, 1.0)
                place(hat_noise, noise_burst(rng, decay, length), at(bar, i * 0.5, 0.003),
                      pan=0.35, gain=(0.14 if open_hat else 0.20) * vel)

    # Filter the noise buses once (cheaper than filtering every hit).
    hat = signal.sosfilt(signal.butter(4, 7000, "high", fs=SR, output="sos"), hat_noise, axis=1)
    snr += signal.sosfilt(signal.butter(2, [1200, 9000], "band", fs=SR, output="sos"),
                          snr_noise, axis=1)
    # Gentle soft saturation on the snare: tames the random spikes of the noise
    # burst (which would otherwise set the normalisation peak) without
    # touching its body.
    snr = 0.5 * np.tanh(snr / 0.5)

    # Echo on the lead: dotted eighth, ping-pong.
    lead = ping_pong_echo(lead, 0.75 * BEAT, 0.38, taps=4)

    # Dry mix and reverb send.
    dry = pad + plk + bass + lead + kik + snr + hat
    send = 0.9 * pad + 0.7 * plk + 0.6 * lead + 0.5 * snr + 0.15 * hat + 0.05 * bass
    ir = make_reverb_ir(rng)
    wet = np.stack([signal.fftconvolve(send[c], ir[c])[:n_bus] for c in range(2)])
    mix = dry + 0.22 * wet

    # Master: remove DC/rumble, cut to length, fade out, normalise.
    mix = signal.sosfilt(signal.butter(2, 25, "high", fs=SR, output="sos"), mix, axis=1)
    mix = mix[:, :n_total]
    fade = min(secs(2.5), n_total // 4)
    mix[:, n_total - fade:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    mix[:, :secs(0.01)] *= np.linspace(0, 1, secs(0.01))           # click-free start
    mix *= 10 ** (PEAK_DBFS / 20) / np.max(np.abs(mix))
    return mix.T.astype(np.float32)


def write_mp3_atomic(path: Path, audio: np.ndarray) -> None:
    """Encode ``audio`` to MP3 next to ``path`` and atomically move it in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp3.tmp")
    os.close(fd)
    try:
        # libsndfile/LAME: CBR, compression_level 0.0 = 320 kbit/s ... 1.0 = 32 kbit/s;
        # 0.65 gives ~128 kbit/s, i.e. roughly 0.5 MB for 30 s.
        sf.write(tmp, audio, SR, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=0.65, bitrate_mode="CONSTANT")
        # mkstemp creates the file as 0600; give it normal permissions (umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).resolve().parent / "wavdiff_demo.mp3",
                        help="where to write the MP3 (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of the clip in seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")

    audio = render(args.seconds)
    write_mp3_atomic(args.output, audio)
    size_kb = args.output.stat().st_size / 1024
    print(f"wrote {args.output} ({len(audio) / SR:.1f} s, {size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()
