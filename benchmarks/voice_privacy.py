"""Voice anonymization, VoicePrivacy style, on FSDD: speaker linkability against speech content.

Data: the Free Spoken Digit Dataset in ``../shared/data/fsdd`` (3,000 clips, 6 speakers, 50 of
each digit per speaker), resampled to the service's 16 kHz as the sanitizer does. Clips with
index 0–24 are enrollment, 25–49 trial (so each half holds every digit of every speaker).
Anonymized clips go through ``VoiceAnonymizer.released_audio``, the release's own function, on
the canonical FLAC of the clip.

Attacker: the pretrained ``resemblyzer`` speaker encoder (weights in its wheel). A speaker's
model is the mean of its enrollment embeddings; a trial is scored by cosine similarity against
all six models (target and non-target trials give the equal error rate, the best model gives
speaker-identification accuracy). Conditions:

- ``original``: enrollment and trials original (the baseline: how linkable voices are now);
- ``ignorant``: enrollment original, trials anonymized;
- ``lazy-informed``: enrollment anonymized by the same system with another seed;
- ``trained``: a stronger attacker that trains a classifier (logistic regression on the
  embeddings) on anonymized enrollment clips, then scores anonymized trials.

Releases: enrollment and trial clips are each grouped into releases of k (``--k``, default 5
and 20; ``compose_releases``): a release is one digit (one exercise, as a bucket is) from k
different speakers where FSDD's six allow, so k = 20 holds each speaker three or four times;
``--mixed-words`` mixes digits instead. Each release gets the anonymizer a release builds
(``VoiceAnonymizer.for_release``: the ``pseudo_voice`` target is drawn per release, and a
retiming one takes the release's median duration and, if it averages, the mean of its clips'
mapped envelopes; ``mcadams`` and ``world`` draw per clip anyway). Linking within releases: an
attacker holding two consecutive releases links each clip of the first to its most similar
clip of the second (cosine of encoder embeddings, or of the trained attacker's speaker
posteriors); the share of links that find the same speaker is set against chance.

Utility: PocketSphinx (en-US model in its wheel) with a grammar of the ten digits; word
accuracy on the trial clips, original and anonymized, in the same run.

Speed: clips per second per core of ``released_audio`` (FLAC in and out), the transforms taking
turns round by round in one process, ``world ×1`` (the per-clip transform) always among them.

The sweep (McAdams ranges, WORLD strengths, pseudo-voice strengths, and the pseudo-voice with
timing, intonation, spectral spread or spectral frames taken from the release) gives the
privacy/utility curve (PNG plot).

    .venv/bin/python benchmarks/voice_privacy.py [--clips-per-speaker N] [--k 5 20]
        [--transforms …] [--jobs 2] [--speed-clips 200] [--mixed-words] [--speed-only]
        [--out F.md] [--plot F.png]

``--quick`` uses 48 clips, two transforms and k = 5 (about a minute). Needs the ``voice`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from core.sample_data import find_sample_data  # noqa: E402
from policies import flac  # noqa: E402
from policies.pseudo_voice import Timing  # noqa: E402
from policies.voice import VoiceAnonymizer, decode_mono  # noqa: E402

SAMPLE_RATE = 16000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RELEASE_SIZES = (5, 20)


# The transforms swept: McAdams ranges (the VoicePrivacy baseline), WORLD pitch + formant
# shifts at several strengths (the default policy ranges are "world ×1"), all drawn per clip,
# and the release's pseudo-voice at several strengths (1 maps each clip all the way).
def _world(scale: float) -> VoiceAnonymizer:
    return VoiceAnonymizer(
        method="world",
        pitch_octaves=(0.4 * scale, 0.8 * scale),
        formant_octaves=(0.1 * scale, 0.2 * scale),
    )


def _pseudo_voice(
    strength: float,
    vocal_tract_share: float = 0.0,
    *,
    timing: Timing | None = None,
    intonation_share: float = 0.0,
    spread_share: float = 0.0,
    averaging_share: float = 0.0,
) -> VoiceAnonymizer:
    return VoiceAnonymizer(
        method="pseudo_voice",
        strength=strength,
        vocal_tract_share=vocal_tract_share,
        timing=timing,
        intonation_share=intonation_share,
        spread_share=spread_share,
        averaging_share=averaging_share,
    )


SWEEP: dict[str, VoiceAnonymizer] = {
    "mcadams 0.7–0.9": VoiceAnonymizer(method="mcadams", alpha=(0.7, 0.9)),
    "mcadams 0.5–0.6": VoiceAnonymizer(method="mcadams", alpha=(0.5, 0.6)),
    "world ×0.75": _world(0.75),
    "world ×1": _world(1.0),
    "world ×1.25": _world(1.25),
    "world ×1.5": _world(1.5),
    "pseudo-voice ×0": _pseudo_voice(0.0),
    "pseudo-voice ×0.5": _pseudo_voice(0.5),
    "pseudo-voice ×0.75": _pseudo_voice(0.75),
    "pseudo-voice": _pseudo_voice(1.0),
    "pseudo-voice + vocal tract ×0.5": _pseudo_voice(1.0, 0.5),
    # Prosody taken from the release (policies.pseudo_prosody): timing, intonation, dynamics.
    "pseudo-voice + timing": _pseudo_voice(1.0, timing="uniform"),
    "pseudo-voice + timing anchored": _pseudo_voice(1.0, timing="anchored"),
    "pseudo-voice + intonation": _pseudo_voice(1.0, intonation_share=1.0),
    "pseudo-voice + intonation ×0.5": _pseudo_voice(1.0, intonation_share=0.5),
    "pseudo-voice + spread": _pseudo_voice(1.0, spread_share=1.0),
    "pseudo-voice + spread ×0.5": _pseudo_voice(1.0, spread_share=0.5),
    "pseudo-voice + timing + intonation": _pseudo_voice(
        1.0, timing="anchored", intonation_share=1.0
    ),
    "pseudo-voice + prosody": _pseudo_voice(
        1.0, timing="anchored", intonation_share=1.0, spread_share=1.0
    ),
    "pseudo-voice + timing + averaging ×0.5": _pseudo_voice(
        1.0, timing="anchored", averaging_share=0.5
    ),
    "pseudo-voice + timing + averaging ×0.75": _pseudo_voice(
        1.0, timing="anchored", averaging_share=0.75
    ),
    "pseudo-voice + timing + averaging ×0.8": _pseudo_voice(
        1.0, timing="anchored", averaging_share=0.8
    ),
    "pseudo-voice + timing + averaging ×0.85": _pseudo_voice(
        1.0, timing="anchored", averaging_share=0.85
    ),
    "pseudo-voice + timing + averaging ×0.9": _pseudo_voice(
        1.0, timing="anchored", averaging_share=0.9
    ),
    "pseudo-voice + timing + averaging": _pseudo_voice(1.0, timing="anchored", averaging_share=1.0),
    "pseudo-voice + timing + intonation + averaging ×0.5": _pseudo_voice(
        1.0, timing="anchored", intonation_share=1.0, averaging_share=0.5
    ),
    "pseudo-voice + prosody + averaging ×0.5": _pseudo_voice(
        1.0, timing="anchored", intonation_share=1.0, spread_share=0.5, averaging_share=0.5
    ),
    "pseudo-voice + prosody + vocal tract ×0.5": _pseudo_voice(
        1.0, 0.5, timing="anchored", intonation_share=1.0, spread_share=1.0
    ),
}
QUICK_SWEEP = ("mcadams 0.7–0.9", "pseudo-voice")


@dataclass(frozen=True)
class Clip:
    digit: int
    speaker: str
    index: int
    flac: bytes  # the canonical 16 kHz FLAC the service would hold
    enrollment: bool = False

    @property
    def duration_s(self) -> float:
        return float(flac.duration_s(self.flac))


def fsdd_folder() -> Path:
    """The FSDD recordings ``core.sample_data`` finds (the full set or the fixtures)."""
    found = find_sample_data()
    if found is None:
        raise SystemExit("no FSDD recordings: set CHORUS_DATA_DIR (README: Test data)")
    return found.fsdd


def _enrollment_stems(paths: Sequence[Path]) -> set[str]:
    """Each speaker's lower half by take index (ties by name): its enrollment clips."""
    by_speaker: dict[str, list[Path]] = {}
    for path in paths:
        by_speaker.setdefault(path.stem.split("_")[1], []).append(path)
    stems: set[str] = set()
    for speaker_paths in by_speaker.values():
        ordered = sorted(speaker_paths, key=lambda p: (int(p.stem.split("_")[2]), p.stem))
        stems.update(p.stem for p in ordered[: len(ordered) // 2])
    return stems


def load_fsdd(root: Path | None = None, *, per_speaker: int | None = None) -> list[Clip]:
    """FSDD clips as the sanitizer leaves them; ``per_speaker`` takes an even subset
    (half enrollment, half trial, digits spread)."""
    import soundfile as sf
    import soxr

    paths = sorted((root or fsdd_folder()).glob("*.wav"))
    enrollment = _enrollment_stems(paths)
    chosen: list[Path] = []
    if per_speaker is None:
        chosen = paths
    else:
        by_speaker: dict[str, list[Path]] = {}
        for path in paths:
            by_speaker.setdefault(path.stem.split("_")[1], []).append(path)
        half = max(1, per_speaker // 2)
        for speaker_paths in by_speaker.values():
            for group in (
                [p for p in speaker_paths if p.stem in enrollment],
                [p for p in speaker_paths if p.stem not in enrollment],
            ):
                step = max(1, len(group) // half)
                # Walk digits and indices together so that a subset holds many digits.
                ordered = sorted(group, key=lambda p: (int(p.stem.split("_")[2]), p.stem))
                chosen.extend(ordered[::step][:half])
    clips = []
    for path in chosen:
        digit, speaker, index = path.stem.split("_")
        samples, rate = sf.read(path, dtype="float64", always_2d=True)
        mono = samples.mean(axis=1)
        if rate != SAMPLE_RATE:
            mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
        clips.append(
            Clip(
                int(digit),
                speaker,
                int(index),
                flac.encode_samples(mono, SAMPLE_RATE),
                path.stem in enrollment,
            )
        )
    return clips


def compose_releases(
    clips: Sequence[Clip], k: int, *, seed: int, mixed_words: bool = False
) -> list[list[int]]:
    """Clip indices grouped into releases of ``k``, each of one digit (one exercise, as a
    bucket is); each digit's last release holds what is left of it (fewer than k when its
    clips do not divide).

    Within a digit each speaker's clips are queued in a seeded random order, and every release
    takes the next clip of the speakers it holds fewest of, those with most clips left first:
    with FSDD's six speakers a release of k ≤ 6 holds k different speakers, one clip each; a
    release of k = 20 holds every speaker three or four times. ``mixed_words`` ignores the
    digit, so a release holds different words (the case a transform that averages over a
    release handles worst: a bucket's clips should all say one prompt)."""
    rng = np.random.default_rng(seed)
    groups: dict[int, list[int]] = {}
    for i in rng.permutation(len(clips)):
        groups.setdefault(0 if mixed_words else clips[i].digit, []).append(int(i))
    releases: list[list[int]] = []
    for group in (groups[key] for key in sorted(groups)):
        queues: dict[str, list[int]] = {}
        for i in group:
            queues.setdefault(clips[i].speaker, []).append(i)
        while any(queues.values()):
            release: list[int] = []
            held: dict[str, int] = {}
            while len(release) < k and any(queues.values()):
                speaker = min(
                    (s for s, queue in queues.items() if queue),
                    key=lambda s: (held.get(s, 0), -len(queues[s]), rng.random()),
                )
                release.append(queues[speaker].pop(0))
                held[speaker] = held.get(speaker, 0) + 1
            releases.append(release)
    return releases


def anonymize_all(
    clips: Sequence[Clip],
    voice: VoiceAnonymizer,
    *,
    seed: int,
    releases: Sequence[Sequence[int]] | None = None,
    jobs: int = 1,
) -> list[np.ndarray]:
    """Each clip through the release's transform, as samples.

    Every release gets the anonymizer a release would build (``for_release``: a pseudo-voice
    target of its own) and every clip its own generator, all spawned from ``seed``, so the
    result does not depend on ``jobs``. Without ``releases`` every clip is a release alone."""
    groups = releases if releases is not None else [[i] for i in range(len(clips))]
    release_seeds = np.random.SeedSequence(seed).spawn(len(groups))
    clip_seeds = np.random.SeedSequence([seed, 1]).spawn(len(clips))
    voices: list[VoiceAnonymizer] = [voice] * len(clips)
    for group, release_seed in zip(groups, release_seeds, strict=True):
        members = [clips[i] for i in group]
        release_voice = (
            voice.for_release(np.random.default_rng(release_seed))
            .retimed_to(median_duration(members))
            .averaged_over(clip.flac for clip in members)
        )
        for i in group:
            voices[i] = release_voice
    data = [clip.flac for clip in clips]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(_anonymize_one, voices, data, clip_seeds, chunksize=32))
    return [_anonymize_one(v, d, s) for v, d, s in zip(voices, data, clip_seeds, strict=True)]


def median_duration(clips: Sequence[Clip]) -> float:
    """The release's one duration when its transform retimes clips: the median upload's."""
    return float(np.median([clip.duration_s for clip in clips]))


def _anonymize_one(voice: VoiceAnonymizer, data: bytes, seed: np.random.SeedSequence) -> np.ndarray:
    return decode_mono(voice.released_audio(data, rng=np.random.default_rng(seed)))[0]


def clips_per_second(
    clips: Sequence[Clip], voices: dict[str, VoiceAnonymizer], *, rounds: int = 3
) -> dict[str, float]:
    """CPU throughput of ``released_audio`` (FLAC in, FLAC out) in this one process: clips per
    second per core. The transforms take turns, round by round, so load falls on all alike."""
    spent = dict.fromkeys(voices, 0.0)
    for _ in range(rounds):
        for label, voice in voices.items():
            started = time.process_time()
            # The release's own pass over its clips (averaging) counts against the transform.
            release_voice = (
                voice.for_release()
                .retimed_to(median_duration(clips))
                .averaged_over(clip.flac for clip in clips)
            )
            for clip in clips:
                release_voice.released_audio(clip.flac)
            spent[label] += time.process_time() - started
    return {label: rounds * len(clips) / max(seconds, 1e-9) for label, seconds in spent.items()}


def originals(clips: Sequence[Clip]) -> list[np.ndarray]:
    return [decode_mono(clip.flac)[0] for clip in clips]


# --- the attacker -----------------------------------------------------------------------------


class SpeakerEncoder:
    """resemblyzer's pretrained encoder on the CPU: unit-norm embeddings of 16 kHz clips.

    Batched: the partial utterances of many clips go through the network together (the same
    slices, padding and averaging as ``VoiceEncoder.embed_utterance``, a clip at a time)."""

    def __init__(self, *, batch: int = 256) -> None:
        import torch

        with warnings.catch_warnings():
            # resemblyzer imports deprecated scipy and pkg_resources names; not ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            from resemblyzer import VoiceEncoder

        torch.set_num_threads(1)  # the benchmark's processes share two cores
        self._encoder = VoiceEncoder("cpu", verbose=False)
        self._batch = batch

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from resemblyzer import audio, preprocess_wav

        partials: list[np.ndarray] = []
        owners: list[int] = []
        for owner, samples in enumerate(clips):
            wav = preprocess_wav(samples.astype(np.float32), source_sr=SAMPLE_RATE)
            if wav.size < SAMPLE_RATE // 10:  # VAD trimmed nearly everything: keep the clip
                wav = samples.astype(np.float32)
            wav_slices, mel_slices = self._encoder.compute_partial_slices(len(wav), 1.3, 0.75)
            wav = np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav))))
            mel = audio.wav_to_mel_spectrogram(wav)
            partials.extend(mel[s] for s in mel_slices)
            owners.extend([owner] * len(mel_slices))
        embeddings = []
        with torch.no_grad():
            for start in range(0, len(partials), self._batch):
                mels = torch.from_numpy(np.stack(partials[start : start + self._batch]))
                embeddings.append(self._encoder(mels).numpy())
        partial_embeddings = np.concatenate(embeddings).astype(np.float64)
        sums = np.zeros((len(clips), partial_embeddings.shape[1]))
        np.add.at(sums, np.asarray(owners), partial_embeddings)
        return np.asarray(sums / np.linalg.norm(sums, axis=1, keepdims=True))


def eer_score(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Equal error rate of a verifier: where false acceptance equals false rejection
    (0.5 is chance, higher is more private)."""
    scores = np.concatenate([target, nontarget])
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(nontarget))])
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    # Threshold just below each score, in descending order: accept the top i+1 trials.
    false_accept = np.cumsum(1 - labels) / max(1, len(nontarget))
    false_reject = 1 - np.cumsum(labels) / max(1, len(target))
    false_accept = np.concatenate([[0.0], false_accept])
    false_reject = np.concatenate([[1.0], false_reject])
    gap = false_accept - false_reject
    i = int(np.argmax(gap >= 0))
    if i == 0:
        return float(false_accept[0])
    # Linear interpolation between the two operating points around the crossing.
    a0, a1, r0, r1 = false_accept[i - 1], false_accept[i], false_reject[i - 1], false_reject[i]
    denominator = (a1 - a0) - (r1 - r0)
    t = 0.0 if denominator == 0 else (r0 - a0) / denominator
    return float(a0 + t * (a1 - a0))


@dataclass(frozen=True)
class AttackResult:
    eer: float
    identification_accuracy: float


def attack(
    scores: np.ndarray, trial_speakers: Sequence[str], speakers: Sequence[str]
) -> AttackResult:
    """EER and identification accuracy from a (trials × speakers) score matrix."""
    truth = np.array([[s == t for t in speakers] for s in trial_speakers])
    eer = eer_score(scores[truth], scores[~truth])
    predicted = np.asarray(speakers)[np.argmax(scores, axis=1)]
    accuracy = float(np.mean(predicted == np.asarray(trial_speakers)))
    return AttackResult(eer=eer, identification_accuracy=accuracy)


def cosine_scores(
    enroll: np.ndarray, enroll_speakers: Sequence[str], trials: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Cosine similarity of each trial embedding to each speaker's mean enrollment embedding."""
    speakers = sorted(set(enroll_speakers))
    labels = np.asarray(enroll_speakers)
    models = np.stack([enroll[labels == s].mean(axis=0) for s in speakers])
    models /= np.linalg.norm(models, axis=1, keepdims=True)
    unit = trials / np.linalg.norm(trials, axis=1, keepdims=True)
    return unit @ models.T, speakers


def trained_scores(
    enroll: np.ndarray, enroll_speakers: Sequence[str], trials: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A classifier trained on (anonymized) enrollment embeddings: per-speaker log-odds."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(enroll, list(enroll_speakers))
    return model.decision_function(trials), [str(c) for c in model.classes_]


# --- utility ------------------------------------------------------------------------------------


_DIGIT_GRAMMAR = "#JSGF V1.0;\ngrammar digits;\npublic <digit> = " + " | ".join(DIGITS) + " ;\n"
_decoder: Any = None


def _recognize(samples: np.ndarray) -> str:
    """The digit word PocketSphinx hears in one 16 kHz clip ('' when none)."""
    global _decoder
    if _decoder is None:
        from pocketsphinx import Decoder

        _decoder = Decoder(lm=None, loglevel="FATAL")
        _decoder.add_jsgf_string("digits", _DIGIT_GRAMMAR)
        _decoder.activate_search("digits")
    pcm = np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    # Quarter-second of silence each side: FSDD is trimmed tight, the recognizer wants context.
    pad = np.zeros(SAMPLE_RATE // 4, dtype=np.int16)
    _decoder.start_utt()
    _decoder.process_raw(np.concatenate([pad, pcm, pad]).tobytes(), full_utt=True)
    _decoder.end_utt()
    hypothesis = _decoder.hyp()
    return "" if hypothesis is None else str(hypothesis.hypstr).strip()


def word_accuracy_score(
    clips: Sequence[np.ndarray], digits: Sequence[int], *, jobs: int = 1
) -> float:
    """Share of clips whose recognized word is the spoken digit (higher is better)."""
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            heard = list(pool.map(_recognize, clips, chunksize=16))
    else:
        heard = [_recognize(c) for c in clips]
    return float(np.mean([h == DIGITS[d] for h, d in zip(heard, digits, strict=True)]))


# --- linking within releases ---------------------------------------------------------------


@dataclass(frozen=True)
class LinkageResult:
    """How often an attacker, holding two releases, picks for a clip of the first the clip of
    the second spoken by the same speaker (chance is the share of such clips)."""

    accuracy: float
    chance: float


def release_linkage(
    features: np.ndarray,
    speakers: Sequence[str],
    releases: Sequence[Sequence[int]],
) -> LinkageResult:
    """Each release against the next: every clip whose speaker the next release holds is
    linked to its most similar clip there (cosine of ``features``)."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(speakers)
    hits: list[bool] = []
    chances: list[float] = []
    for first, second in itertools.pairwise(releases):
        a, b = np.asarray(first), np.asarray(second)
        similarity = unit[a] @ unit[b].T
        for row, clip in enumerate(a):
            same = labels[b] == labels[clip]
            if not same.any():
                continue
            hits.append(bool(same[int(np.argmax(similarity[row]))]))
            chances.append(float(same.mean()))
    if not hits:
        return LinkageResult(accuracy=float("nan"), chance=float("nan"))
    return LinkageResult(accuracy=float(np.mean(hits)), chance=float(np.mean(chances)))


# --- one run ----------------------------------------------------------------------------------


@dataclass
class SweepPoint:
    label: str
    k: int
    ignorant: AttackResult
    lazy_informed: AttackResult
    trained: AttackResult
    linkage_encoder: LinkageResult
    linkage_trained: LinkageResult
    word_accuracy: float
    seconds_per_clip: float


@dataclass
class Report:
    clips: int
    speakers: int
    original: AttackResult
    original_word_accuracy: float
    original_linkage: dict[int, LinkageResult] = field(default_factory=dict)
    points: list[SweepPoint] = field(default_factory=list)
    clips_per_second: dict[str, float] = field(default_factory=dict)


def run(
    clips: Sequence[Clip],
    sweep: dict[str, VoiceAnonymizer],
    *,
    sizes: Sequence[int] = RELEASE_SIZES,
    jobs: int = 1,
    mixed_words: bool = False,
    progress: Callable[[str], None] = print,
) -> Report:
    encoder = SpeakerEncoder()
    enroll = [c for c in clips if c.enrollment]
    trial = [c for c in clips if not c.enrollment]
    enroll_speakers = [c.speaker for c in enroll]
    trial_speakers = [c.speaker for c in trial]
    trial_digits = [c.digit for c in trial]

    enroll_original = encoder.embed(originals(enroll))
    trial_original_audio = originals(trial)
    trial_original = encoder.embed(trial_original_audio)
    report = Report(
        clips=len(clips),
        speakers=len(set(enroll_speakers)),
        original=_attack(
            cosine_scores, enroll_original, enroll_speakers, trial_original, trial_speakers
        ),
        original_word_accuracy=word_accuracy_score(trial_original_audio, trial_digits, jobs=jobs),
    )
    progress(f"original: {report.original}, word accuracy {report.original_word_accuracy:.3f}")
    for k in sizes:
        enroll_releases = compose_releases(enroll, k, seed=10 + k, mixed_words=mixed_words)
        trial_releases = compose_releases(trial, k, seed=20 + k, mixed_words=mixed_words)
        report.original_linkage[k] = release_linkage(trial_original, trial_speakers, trial_releases)
        for label, voice in sweep.items():
            started = time.perf_counter()
            trial_anonymized_audio = anonymize_all(
                trial, voice, seed=1, releases=trial_releases, jobs=jobs
            )
            # Wall time over the jobs' processes: the throughput a release with as many would see.
            elapsed = time.perf_counter() - started
            enroll_anonymized = encoder.embed(
                anonymize_all(enroll, voice, seed=2, releases=enroll_releases, jobs=jobs)
            )
            trial_anonymized = encoder.embed(trial_anonymized_audio)
            trained_features, _ = trained_scores(
                enroll_anonymized, enroll_speakers, trial_anonymized
            )
            point = SweepPoint(
                label=label,
                k=k,
                ignorant=_attack(
                    cosine_scores,
                    enroll_original,
                    enroll_speakers,
                    trial_anonymized,
                    trial_speakers,
                ),
                lazy_informed=_attack(
                    cosine_scores,
                    enroll_anonymized,
                    enroll_speakers,
                    trial_anonymized,
                    trial_speakers,
                ),
                trained=_attack(
                    trained_scores,
                    enroll_anonymized,
                    enroll_speakers,
                    trial_anonymized,
                    trial_speakers,
                ),
                linkage_encoder=release_linkage(trial_anonymized, trial_speakers, trial_releases),
                linkage_trained=release_linkage(
                    _softmax(trained_features), trial_speakers, trial_releases
                ),
                word_accuracy=word_accuracy_score(trial_anonymized_audio, trial_digits, jobs=jobs),
                seconds_per_clip=elapsed / max(1, len(trial)),
            )
            report.points.append(point)
            progress(f"k={k} {label}: {point}")
    return report


def _softmax(scores: np.ndarray) -> np.ndarray:
    """The trained attacker's speaker posteriors from its per-speaker scores."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


Scorer = Callable[[np.ndarray, Sequence[str], np.ndarray], tuple[np.ndarray, list[str]]]


def _attack(
    scorer: Scorer,
    enroll: np.ndarray,
    enroll_speakers: Sequence[str],
    trials: np.ndarray,
    trial_speakers: Sequence[str],
) -> AttackResult:
    scores, speakers = scorer(enroll, enroll_speakers, trials)
    return attack(scores, trial_speakers, speakers)


# --- report -----------------------------------------------------------------------------------

GOAL_TRAINED_EER = 0.20
GOAL_IGNORANT_EER = 0.35
GOAL_LAZY_EER = 0.30
GOAL_MAX_WORD_ACCURACY_DROP = 0.05
GOAL_CLIPS_PER_SECOND = 200.0


def meets_goal(point: SweepPoint, report: Report) -> bool:
    """The privacy and utility goal (speed is judged apart, on ``clips_per_second``)."""
    drop = report.original_word_accuracy - point.word_accuracy
    return (
        point.ignorant.eer >= GOAL_IGNORANT_EER
        and point.lazy_informed.eer >= GOAL_LAZY_EER
        and point.trained.eer >= GOAL_TRAINED_EER
        and drop <= GOAL_MAX_WORD_ACCURACY_DROP
    )


def markdown(report: Report, *, command: str, load: str) -> str:
    trials = report.clips // 2
    linkage = "; ".join(
        f"k = {k}: {result.accuracy:.1%} (chance {result.chance:.1%})"
        for k, result in report.original_linkage.items()
    )
    lines = [
        f"`{command}` — {report.clips} FSDD clips ({report.speakers} speakers; half enrollment, "
        f"half trial, about {trials} each), load average {load}.",
        "",
        f"Original voices (baseline): EER {report.original.eer:.3f}, speaker identification "
        f"{report.original.identification_accuracy:.1%}; PocketSphinx digit word accuracy "
        f"{report.original_word_accuracy:.1%}; linking across two releases (encoder) {linkage}.",
        "",
        "| k | transform | EER ignorant | EER lazy-informed | EER trained | speaker id (ignorant "
        "/ lazy / trained) | linked across releases: encoder / trained (chance) | word accuracy "
        "(change) | ms/clip (wall, all jobs) | goal met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report.points:
        drop = report.original_word_accuracy - p.word_accuracy
        lines.append(
            f"| {p.k} | {p.label} | {p.ignorant.eer:.3f} | {p.lazy_informed.eer:.3f} | "
            f"{p.trained.eer:.3f} | {p.ignorant.identification_accuracy:.1%} / "
            f"{p.lazy_informed.identification_accuracy:.1%} / "
            f"{p.trained.identification_accuracy:.1%} | {p.linkage_encoder.accuracy:.1%} / "
            f"{p.linkage_trained.accuracy:.1%} ({p.linkage_encoder.chance:.1%}) | "
            f"{p.word_accuracy:.1%} ({-drop * 100:+.1f} pts) | {p.seconds_per_clip * 1000:.0f} | "
            f"{'yes' if meets_goal(p, report) else 'no'} |"
        )
    if report.clips_per_second:
        lines += ["", speed_markdown(report)]
    return "\n".join(lines) + "\n"


def speed_markdown(report: Report) -> str:
    lines = [
        "| transform | clips/s per core (`released_audio`, FLAC in and out) |",
        "|---|---|",
    ]
    lines += [f"| {label} | {rate:.0f} |" for label, rate in report.clips_per_second.items()]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    """EER of each attacker against the word-accuracy drop, one point per transform and k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    drops = [(report.original_word_accuracy - p.word_accuracy) * 100 for p in report.points]
    for name, key, marker in (
        ("ignorant", "ignorant", "o"),
        ("lazy-informed", "lazy_informed", "s"),
        ("trained", "trained", "^"),
    ):
        eers = [getattr(p, key).eer for p in report.points]
        axes.scatter(drops, eers, marker=marker, label=name)
    for p, drop in zip(report.points, drops, strict=True):
        axes.annotate(
            f"{p.label} (k={p.k})",
            (drop, p.trained.eer),
            fontsize=6,
            xytext=(3, -8),
            textcoords="offset points",
        )
    axes.axhline(GOAL_IGNORANT_EER, color="grey", linestyle="--", linewidth=0.8)
    axes.axhline(GOAL_LAZY_EER, color="grey", linestyle=":", linewidth=0.8)
    axes.axhline(GOAL_TRAINED_EER, color="grey", linestyle=(0, (1, 3)), linewidth=0.8)
    axes.axvline(GOAL_MAX_WORD_ACCURACY_DROP * 100, color="grey", linestyle="-.", linewidth=0.8)
    axes.axhline(report.original.eer, color="black", linewidth=0.8)
    axes.set_xlabel("PocketSphinx word-accuracy drop (points, lower is better)")
    axes.set_ylabel("attacker EER (0.5 = chance, higher is more private)")
    axes.set_title(f"Voice anonymization on FSDD ({report.clips} clips)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="48 clips, two transforms")
    parser.add_argument(
        "--clips-per-speaker", type=int, default=None, help="clips per speaker (default: all 500)"
    )
    parser.add_argument(
        "--transforms",
        nargs="+",
        choices=list(SWEEP),
        default=None,
        help="run only these transforms of the sweep",
    )
    parser.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=None,
        help="release sizes (default: 5 and 20; --quick: 5)",
    )
    parser.add_argument(
        "--speed-clips",
        type=int,
        default=None,
        help="clips timed per transform and round for clips/s per core "
        "(default 200; --quick: none)",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes for anonymization and the recognizer"
    )
    parser.add_argument(
        "--mixed-words",
        action="store_true",
        help="compose releases of different digits (a release is normally one exercise)",
    )
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only time the transforms (clips/s per core), no attackers or recognizer",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    per_speaker = 8 if args.quick else args.clips_per_speaker
    chosen = args.transforms or (QUICK_SWEEP if args.quick else list(SWEEP))
    sweep = {label: SWEEP[label] for label in chosen}
    sizes = args.k or ((5,) if args.quick else RELEASE_SIZES)
    found = find_sample_data()
    if found is None:
        raise SystemExit("no FSDD recordings: set CHORUS_DATA_DIR (README: Test data)")
    print(f"FSDD: {found.describe()}")
    clips = load_fsdd(found.fsdd, per_speaker=per_speaker)
    if args.speed_only:
        nothing = AttackResult(eer=float("nan"), identification_accuracy=float("nan"))
        report = Report(clips=len(clips), speakers=0, original=nothing, original_word_accuracy=0.0)
    else:
        report = run(clips, sweep, sizes=sizes, jobs=args.jobs, mixed_words=args.mixed_words)
    speed_clips = args.speed_clips if args.speed_clips is not None else (0 if args.quick else 200)
    if speed_clips:
        timed = {"none (copy)": VoiceAnonymizer(method="none"), **sweep}
        if "world ×1" not in timed and importlib.util.find_spec("pyworld") is not None:
            timed["world ×1"] = SWEEP["world ×1"]  # the per-clip transform this one replaces
        trial = [clip for clip in clips if not clip.enrollment][:speed_clips]
        report.clips_per_second = clips_per_second(trial, timed)
    one, five, _ = os.getloadavg()
    command = "python benchmarks/voice_privacy.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = markdown(report, command=command.strip(), load=f"{one:.1f} / {five:.1f}")
    if args.speed_only:
        text = f"`{command.strip()}`, load average {one:.1f} / {five:.1f}\n\n"
        text += speed_markdown(report) + "\n"
    print(text)
    out = args.out or Path(tempfile.gettempdir()) / "voice_privacy.md"
    out.write_text(text, encoding="utf-8")
    if not args.speed_only:
        plot(report, args.plot or Path(tempfile.gettempdir()) / "voice_privacy.png")


if __name__ == "__main__":
    main()
