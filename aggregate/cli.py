"""Release commands: ``chorus release`` for operators, ``chorus releases …`` for researchers.

``chorus releases`` talks HTTP to a running server (``--url``/``CHORUS_URL``, ``--key``/
``CHORUS_API_KEY``) with a researcher key; it never touches the database or the store.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from core.storage import ChunkReader

ROOT_COMMANDS = ("release",)

releases_app = typer.Typer(
    help="List, inspect and download released batches (needs a researcher key).",
    no_args_is_help=True,
)
_console = Console()

UrlOption = Annotated[
    str, typer.Option("--url", envvar="CHORUS_URL", help="the Chorus server's base URL")
]
KeyOption = Annotated[
    str, typer.Option("--key", envvar="CHORUS_API_KEY", help="a researcher API key")
]


def _fail(message: str) -> None:
    typer.echo(f"chorus: {message}", err=True)
    raise typer.Exit(2)


# --- chorus release -------------------------------------------------------------------------


def release(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would happen, change nothing")
    ] = False,
) -> None:
    """Run one release cycle now: release buckets that reached k, purge expired ones."""
    from aggregate.jobs import interval_seconds, preview_release_cycle, run_release_cycle
    from core.db import Database
    from core.errors import ChorusError
    from core.keystore import open_key_store
    from core.settings import get_settings
    from core.storage import open_store
    from policies.policy import load_policy

    settings = get_settings()
    try:
        policy = load_policy(settings.policy)
        store = open_store(settings.storage_url)
        keys = open_key_store(settings.key_store_url, database_url=settings.database_url)
        database = Database(settings.database_url)
        database.upgrade()
        interval_s = interval_seconds(settings.release_interval or policy.release_interval)
        try:
            if dry_run:
                preview = preview_release_cycle(
                    database=database, policy=policy, interval_s=interval_s
                )
                _print_preview(preview, k=policy.k)
            else:
                report = run_release_cycle(
                    database=database,
                    store=store,
                    keys=keys,
                    policy=policy,
                    interval_s=interval_s,
                )
                _print_report(report)
        finally:
            database.dispose()
    except ChorusError as exc:
        _fail(exc.detail)
    except OSError as exc:  # a local temporary file (the manifest's) on a full or failing disk
        _fail(f"the release cycle failed: {exc.strerror or type(exc).__name__}")


def _print_preview(preview: Any, *, k: int) -> None:
    advance = "would advance to" if preview.would_advance else "would stay at"
    typer.echo(
        f"dry run (k={k}): release cycle {advance} "
        f"{preview.cycle + (1 if preview.would_advance else 0)}"
    )
    for title, buckets in (
        ("would finish", preview.to_resume),
        ("would release", preview.to_release),
        ("would purge", preview.to_purge),
    ):
        typer.echo(f"{title}: {len(buckets)} bucket(s)")
        for b in buckets:
            typer.echo(
                f"  bucket {b.bucket_id} exercise {b.exercise_id} ({b.state}): "
                f"{b.clip_count} clip(s), {b.contributor_count} contributor(s)"
            )


def _print_report(report: Any) -> None:
    state = "advanced to" if report.advanced else "stays at"
    typer.echo(f"release cycle {state} {report.cycle}")
    typer.echo(f"released: {len(report.released)} batch(es)")
    for r in report.released:
        typer.echo(
            f"  release {r.release_id} exercise {r.exercise_id}: "
            f"{r.clip_count} clip(s), {r.contributor_count} contributor(s)"
        )
    typer.echo(f"purged: {len(report.purged)} bucket(s)")
    for p in report.purged:
        typer.echo(
            f"  bucket {p.bucket_id} exercise {p.exercise_id}: "
            f"{p.clip_count} clip(s), {p.contributor_count} contributor(s)"
        )


# --- chorus releases ------------------------------------------------------------------------


def http_client(url: str, key: str) -> httpx.Client:
    """The researcher's HTTP client (tests hand in an in-process one)."""
    return httpx.Client(
        base_url=url, headers={"X-API-Key": key}, timeout=httpx.Timeout(30.0, read=300.0)
    )


def _check(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        problem = response.json()
        detail = f"{problem.get('code', response.status_code)}: {problem.get('detail', '')}"
    except ValueError:
        detail = f"HTTP {response.status_code}"
    _fail(detail)


def _get_json(client: httpx.Client, path: str, **params: Any) -> Any:
    try:
        response = client.get(path, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server: {exc}")
    _check(response)
    return response.json()


@releases_app.command("list")
def list_releases(
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    exercise: Annotated[str | None, typer.Option(help="only this exercise")] = None,
    limit: Annotated[int, typer.Option(min=1, help="how many to show")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a JSON array of the releases")
    ] = False,
) -> None:
    """Released batches, newest first."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with http_client(url, key) as client:
        while len(items) < limit:
            page = _get_json(
                client,
                "/v1/releases",
                limit=min(200, limit - len(items)),
                cursor=cursor,
                exercise_id=exercise,
            )
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table("release", "day", "exercise", "language", "clips", "contributors", "k")
    # Ids are what a researcher copies into the next command: never cut them short.
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 32
    for item in items:
        table.add_row(
            item["release_id"],
            item["release_day"],
            item["exercise_id"],
            item["language"] or "-",
            str(item["clip_count"]),
            str(item["contributor_count"]),
            str(item["k"]),
        )
    _console.print(table)


@releases_app.command("show")
def show_release(
    release_id: Annotated[str, typer.Argument(help="the release id")],
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    clips: Annotated[bool, typer.Option(help="print the manifest's clip list too")] = False,
) -> None:
    """A release's manifest summary and statistics, as JSON."""
    with http_client(url, key) as client:
        manifest = _get_json(client, f"/v1/releases/{release_id}")
    if not clips:
        manifest.pop("clips", None)
    typer.echo(json.dumps(manifest, indent=2))


@releases_app.command("download")
def download_release(
    release_id: Annotated[str, typer.Argument(help="the release id")],
    out: Annotated[Path, typer.Option("--out", help="folder to write into")],
    url: UrlOption = "http://127.0.0.1:8000",
    key: KeyOption = "",
    keep_tar: Annotated[
        bool, typer.Option("--tar", help="save the archive as OUT/<release>.tar, do not extract")
    ] = False,
) -> None:
    """Download a release as a dataset folder OUT: clips/, metadata.csv, README.md, …

    ``datasets.load_dataset(OUT)`` loads it (one row per clip: audio, text, language, …).
    Every file is checked against the release's SHA256SUMS.
    """
    out.mkdir(parents=True, exist_ok=True)
    if not keep_tar and any(out.iterdir()):
        _fail(f"{out} is not empty: download a release into a new or empty folder")
    with http_client(url, key) as client:
        try:
            with client.stream("GET", f"/v1/releases/{release_id}/archive") as response:
                if not response.is_success:
                    response.read()
                    _check(response)
                if keep_tar:
                    _save_tar(response, out / f"{release_id}.tar")
                    typer.echo(f"release {release_id}: {out / (release_id + '.tar')}")
                    return
                digests = _extract_tar(response, out)
        except httpx.HTTPError as exc:
            _fail(f"download interrupted: {exc}")
    clips = _verify_checksums(out, digests)
    typer.echo(f"release {release_id}: {clips} clip(s) in {out}, checksums verified")


def _progress(*columns: Any) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), *columns, console=_console)


def _save_tar(response: httpx.Response, path: Path) -> None:
    with _progress(DownloadColumn(), TransferSpeedColumn()) as progress, path.open("wb") as f:
        task = progress.add_task("downloading", total=None)
        for chunk in response.iter_bytes():
            f.write(chunk)
            progress.advance(task, len(chunk))


def _extract_tar(response: httpx.Response, out: Path) -> dict[str, str]:
    """Unpack the streamed archive into ``out``; returns each file's SHA-256."""
    length = response.headers.get("content-length")
    reader = ChunkReader(response.iter_bytes())
    digests: dict[str, str] = {}
    with (
        _progress(DownloadColumn(), TransferSpeedColumn()) as progress,
        tarfile.open(
            fileobj=reader,
            mode="r|",  # type: ignore[call-overload]
        ) as archive,
    ):
        task = progress.add_task("downloading", total=int(length) if length else None)
        for member in archive:
            archive.extract(member, out, filter="data")
            if member.isfile():
                digests[member.name] = _sha256_file(out / member.name)
            progress.update(task, completed=reader.consumed)
    return digests


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_checksums(out: Path, digests: dict[str, str]) -> int:
    """Every line of SHA256SUMS matches a file received; returns how many clips there are."""
    sums = out / "SHA256SUMS"
    if not sums.is_file():
        _fail("the release has no SHA256SUMS: it was made before releases carried checksums")
    clips = 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        expected, _, name = line.partition("  ")
        if digests.get(name) != expected:
            _fail(f"{name} does not match its SHA-256 in SHA256SUMS: download it again")
        clips += name.startswith("clips/")
    return clips
