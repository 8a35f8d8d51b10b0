"""Policy commands: ``chorus audio anonymize``, the release's voice transform for research."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import ChorusError

audio_app = typer.Typer(help="Audio tools for research and tests.", no_args_is_help=True)
AUDIO_SUFFIXES = (".wav", ".flac")


def _fail(message: str) -> None:
    typer.echo(f"chorus: {message}", err=True)
    raise typer.Exit(2)


@audio_app.command("anonymize")
def anonymize(
    src: Annotated[Path, typer.Argument(help="folder of WAV/FLAC clips")],
    out: Annotated[Path, typer.Option("--out", help="folder for <stem>.flac outputs")],
    policy_name: Annotated[
        str | None,
        typer.Option("--policy", help="policy name or TOML path (default: the one in force)"),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="seed the per-clip draws, for reproducible tests; releases never do"),
    ] = None,
) -> None:
    """Apply the release's voice transform to every WAV/FLAC in SRC; writes OUT/<stem>.flac."""
    import numpy as np

    from core.settings import get_settings
    from policies.policy import load_policy
    from policies.voice import VoiceAnonymizer, decode_mono

    try:
        policy = load_policy(policy_name or get_settings().policy)
    except ChorusError as exc:
        _fail(exc.detail)
    rng = np.random.default_rng(seed) if seed is not None else None
    voice = VoiceAnonymizer.from_policy(policy, rng=rng)  # one folder, one pseudo-voice
    if not voice.enabled:
        _fail(
            f"policy {policy.name!r} does not anonymize voices (voice_anonymization = "
            f"{policy.voice_anonymization!r}); pass --policy with one that does"
        )
    if not src.is_dir():
        _fail(f"{src} is not a folder")
    clips = sorted(p for p in src.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    stems = [clip.stem for clip in clips]
    if len(set(stems)) != len(stems):
        _fail("two clips in the folder share a stem; their outputs would overwrite each other")
    out.mkdir(parents=True, exist_ok=True)
    data = {clip: clip.read_bytes() for clip in clips}
    if voice.retimes and clips:
        # As a release does: one duration for the folder (its median), then its mean frames.
        durations = []
        for clip, clip_data in data.items():
            try:
                samples, rate = decode_mono(clip_data)
            except ChorusError as exc:
                _fail(f"{clip.name}: {exc.detail}")
            durations.append(len(samples) / rate)
        voice = voice.retimed_to(float(np.median(durations))).averaged_over(data.values())
    for clip, clip_data in data.items():
        try:
            released = voice.released_audio(clip_data, rng=rng)
        except ChorusError as exc:
            _fail(f"{clip.name}: {exc.detail}")
        (out / f"{clip.stem}.flac").write_bytes(released)
    typer.echo(f"anonymized {len(clips)} clip(s) into {out} ({voice.method})")
