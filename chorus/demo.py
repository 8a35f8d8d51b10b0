"""``chorus demo``: a whole tour of Chorus on the embedded default, from nothing.

The tour drives the service as its users do: it starts the API with uvicorn on a free loopback
port, talks HTTP to it with role keys and consent tokens, and calls the same functions the
``chorus`` commands call (keys, release, audit). Learners are the speakers of the Free Spoken
Digit Dataset and the course is a STAPLE gold file, both where ``core.sample_data`` finds them
(``CHORUS_DATA_DIR``, ``../shared/data``, else the small fixtures in ``tests/data``, where a
speaker's two recordings stand in, at other gains, for the digits it lacks); with no recordings
at all, speech-like tones are synthesized instead.
Everything it makes lives under one folder (``./var/demo`` unless ``--dir`` says otherwise).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from core.auth import Role, create_key
from core.db import Database
from core.errors import ChorusError, ConfigurationError
from core.sample_data import find_sample_data
from core.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

DEFAULT_DIR = Path("var/demo")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS = tuple(range(10))
# Digits every speaker records (their buckets reach k) and digits only a few record (pending).
FULL_DIGITS = (0, 1, 2, 3, 4)
FEW_SPEAKERS = 3
RARE_EXERCISE = "rare-tongue-twister"
COMMON_LEARNERS = 500
RARE_LEARNERS = 7
COURSE = "en_hu"
# Artefacts of a previous tour that ``--reset`` may remove; nothing else in the folder is touched.
_ARTEFACTS = (
    "chorus.db",
    "chorus.db-wal",
    "chorus.db-shm",
    "blobs",
    "keys",
    "models",
    "downloads",
    "audio",
)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Refusal:
    what: str
    status: int
    code: str


@dataclass
class DemoOutcome:
    """What the tour did, for the summary and for tests."""

    folder: Path
    base_url: str = ""
    audio_source: str = ""
    accepted: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    downloaded_release: str | None = None
    downloaded_clips: int = 0
    audit_ok: bool = False
    audit_checks: int = 0
    course_prompts: int = 0
    queue: list[dict[str, Any]] = field(default_factory=list)
    role_keys: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# --- the server ------------------------------------------------------------------------------


class BackgroundServer:
    """The app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1") -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app, log_config=None, access_log=False, server_header=False, lifespan="on"
        )
        self._server: uvicorn.Server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigurationError("the demo server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- audio -----------------------------------------------------------------------------------


def _fsdd_recordings(fsdd: Path | None) -> Path | None:
    """The folder of recordings in ``fsdd`` (itself or its ``recordings``) if it holds at
    least one recording of every speaker."""
    if fsdd is None:
        return None
    for candidate in (fsdd / "recordings", fsdd):
        if all(any(candidate.glob(f"*_{speaker}_*.wav")) for speaker in SPEAKERS):
            return candidate
    return None


def synthesized_wav(speaker: int, digit: int, take: int = 0) -> bytes:
    """A speech-like clip (see ``chorus.synthetic_voice``): pitch depends on the speaker,
    length and vowels on the digit and the take."""
    from chorus.synthetic_voice import voiced_wav

    return voiced_wav(
        seed=1000 * speaker + 10 * digit + take,
        seconds=0.6 + 0.04 * digit + 0.02 * take,
        sample_rate=8000,
        pitch_hz=95.0 + 28.0 * speaker,
    )


class AudioSource:
    """Recordings of speaker × digit: FSDD files when present, a synthesized voice otherwise."""

    def __init__(self, fsdd: Path | None) -> None:
        self.recordings = _fsdd_recordings(fsdd)
        self.name = "fsdd" if self.recordings is not None else "synthesized"

    def clip(self, speaker_index: int, digit: int, rank: int = 0) -> bytes:
        """The ``rank``-th longest of the first takes (FSDD holds some below the 0.3 s floor)."""
        if self.recordings is None:
            return synthesized_wav(speaker_index, digit, rank)
        import soundfile as sf

        speaker = SPEAKERS[speaker_index]
        names = (f"{digit}_{speaker}_{t}.wav" for t in range(50))
        # A partial copy of FSDD (fewer takes) serves as well as the whole set.
        takes = [path for path in map(self.recordings.joinpath, names) if path.is_file()]
        takes.sort(key=lambda path: -sf.info(str(path)).duration)
        if rank < len(takes):
            return takes[rank].read_bytes()
        return self._stand_in(speaker, digit, rank)

    def _stand_in(self, speaker: str, digit: int, rank: int) -> bytes:
        """One of the speaker's other recordings at its own gain: distinct audio for each
        digit and rank (identical audio from two learners would be one clip released twice)."""
        import soundfile as sf

        assert self.recordings is not None
        own = sorted(self.recordings.glob(f"*_{speaker}_*.wav"))
        samples, rate = sf.read(own[(digit + rank) % len(own)], dtype="float32")
        gain = 0.95 - 0.03 * digit - 0.015 * rank
        buffer = io.BytesIO()
        sf.write(buffer, samples * gain, rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


# --- the tour --------------------------------------------------------------------------------


def demo_settings(folder: Path, public_key_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{folder / 'chorus.db'}",
        storage_url=f"file://{folder / 'blobs'}",
        policy="demo",
        consent_public_key=str(public_key_path),
        scheduler_enabled=False,
    )


def _prepare_folder(folder: Path, *, reset: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    leftovers = [name for name in _ARTEFACTS if (folder / name).exists()]
    if leftovers and not reset:
        raise ConfigurationError(
            f"{folder} already holds a demo ({', '.join(leftovers)}); "
            "pass --reset to start over or --dir for another folder"
        )
    for name in leftovers:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def _make_consent_keys(folder: Path) -> tuple[str, Path]:
    from ingest.consent import generate_keypair

    keys = folder / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    _write_private(keys / "private.pem", private_pem)
    (keys / "public.pem").write_text(public_pem, encoding="ascii")
    return private_pem, keys / "public.pem"


def _make_role_keys(settings: Settings, folder: Path) -> dict[str, str]:
    """What ``chorus keys create`` does, once per role; the keys go to keys/role-keys.txt."""
    from policies.audit import append

    database = Database(settings.database_url)
    try:
        database.upgrade()
        with database.session() as session:
            keys = {}
            for role in Role:
                keys[role.value] = create_key(session, role=role, name=f"demo {role.value}")
                append(session, kind="key_created", body={"role": role.value, "name": "demo"})
    finally:
        database.dispose()
    _write_private(
        folder / "keys" / "role-keys.txt",
        "".join(f"{role}={key}\n" for role, key in keys.items()),
    )
    return keys


def _problem_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", response.status_code))
    except ValueError:
        return str(response.status_code)


def _upload(client: httpx.Client, token: str, audio: bytes, exercise_id: str) -> httpx.Response:
    # A stray field (here the device) is dropped unread by the metadata allowlist.
    metadata = json.dumps({"exercise_id": exercise_id, "device": "demo-phone"}).encode()
    return client.post(
        "/v1/clips",
        headers={"Authorization": f"Bearer {token}"},
        files=[
            ("metadata", (None, metadata, "application/json")),
            ("audio", ("clip.wav", audio, "audio/wav")),
        ],
    )


def _expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise ConfigurationError(
            f"demo step '{what}' answered {response.status_code} "
            f"({_problem_code(response)}), expected {status}"
        )
    return response.json() if response.content else None


class _Tour:
    def __init__(
        self,
        *,
        outcome: DemoOutcome,
        settings: Settings,
        client: httpx.Client,
        keys: dict[str, str],
        private_pem: str,
        audio: AudioSource,
        staple: Path | None,
        echo: Echo,
    ) -> None:
        self.outcome = outcome
        self.settings = settings
        self.client = client
        self.keys = keys
        self.private_pem = private_pem
        self.audio = audio
        self.staple = staple
        self.echo = echo

    def headers(self, role: Role) -> dict[str, str]:
        return {"X-API-Key": self.keys[role.value]}

    def token(self, learner: str, **claims: Any) -> str:
        from ingest.consent import mint_token

        return mint_token(self.private_pem, learner_id=learner, **claims)

    def run(self) -> None:
        self.load_catalog()
        self.upload_learners()
        self.upload_refused()
        self.release()
        self.download()
        self.audit()
        self.import_course()
        self.review_queue()

    def load_catalog(self) -> None:
        entries = [
            {"exercise_id": f"digit-{d}", "learners": COMMON_LEARNERS, "language": "en"}
            for d in DIGITS
        ]
        entries.append({"exercise_id": RARE_EXERCISE, "learners": RARE_LEARNERS})
        body = _expect(
            self.client.put("/v1/exercises/usage", json=entries, headers=self.headers(Role.ADMIN)),
            200,
            "usage catalog",
        )
        self.echo(
            f"usage catalog: {body['exercises']} exercises, {body['eligible']} eligible "
            f"(digit-0…digit-9 with {COMMON_LEARNERS} learners each; {RARE_EXERCISE} "
            f"has only {RARE_LEARNERS})"
        )

    def upload_learners(self) -> None:
        started = time.monotonic()
        for index, speaker in enumerate(SPEAKERS):
            token = self.token(f"learner-{speaker}", age=20 + 3 * index)
            for digit in DIGITS:
                if digit not in FULL_DIGITS and index >= FEW_SPEAKERS:
                    continue
                response = _upload(
                    self.client, token, self.audio.clip(index, digit), f"digit-{digit}"
                )
                _expect(response, 201, f"upload of digit-{digit} by {speaker}")
                self.outcome.accepted += 1
        self.echo(
            f"uploads: {self.outcome.accepted} clips accepted from {len(SPEAKERS)} learners "
            f"({self.audio.name} audio) in {time.monotonic() - started:.1f} s; digits "
            f"{FULL_DIGITS[0]}–{FULL_DIGITS[-1]} from all {len(SPEAKERS)}, the others from "
            f"{FEW_SPEAKERS} (below k, they stay pending)"
        )

    def upload_refused(self) -> None:
        from ingest.consent import generate_keypair

        clip = self.audio.clip(0, 0, rank=1)
        forged_pem, _ = generate_keypair()
        from ingest.consent import mint_token

        attempts = [
            ("a child's recording", self.token("learner-kid", age=11, child=True), "digit-7"),
            ("a rare exercise", self.token("learner-theo-rare", age=30), RARE_EXERCISE),
            ("a forged consent token", mint_token(forged_pem, learner_id="learner-x"), "digit-7"),
            ("a second clip for the same bucket", self.token("learner-george", age=20), "digit-0"),
        ]
        for what, token, exercise_id in attempts:
            response = _upload(self.client, token, clip, exercise_id)
            refusal = Refusal(what, response.status_code, _problem_code(response))
            self.outcome.refusals.append(refusal)
            self.echo(f"refused: {what}: {refusal.status} {refusal.code}")

    def release(self) -> None:
        """What ``chorus release`` does: one release cycle now."""
        from aggregate.jobs import interval_seconds, run_release_cycle
        from chorus.app import prepare

        database, store, policy, keys = prepare(self.settings)
        try:
            report = run_release_cycle(
                database=database,
                store=store,
                keys=keys,
                policy=policy,
                interval_s=interval_seconds(policy.release_interval),
            )
        finally:
            database.dispose()
        self.echo(
            f"release (k={policy.k}): {len(report.released)} batch(es) released, "
            f"{len(report.purged)} purged"
        )
        page = _expect(
            self.client.get(
                "/v1/releases", params={"limit": 100}, headers=self.headers(Role.RESEARCHER)
            ),
            200,
            "list releases",
        )
        self.outcome.releases = page["items"]
        for item in sorted(page["items"], key=lambda r: r["exercise_id"]):
            self.echo(
                f"  {item['release_id']}  {item['exercise_id']:<8} {item['clip_count']} clips, "
                f"{item['contributor_count']} contributors, day {item['release_day']}"
            )

    def download(self) -> None:
        if not self.outcome.releases:
            return
        release_id = str(self.outcome.releases[0]["release_id"])
        target = self.outcome.folder / "downloads" / release_id
        target.mkdir(parents=True, exist_ok=True)
        response = self.client.get(
            f"/v1/releases/{release_id}/archive", headers=self.headers(Role.RESEARCHER)
        )
        if response.status_code != 200:
            _expect(response, 200, "download archive")
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as archive:
            archive.extractall(target, filter="data")
        clips = sorted(target.rglob("*.flac"))
        self.outcome.downloaded_release = release_id
        self.outcome.downloaded_clips = len(clips)
        self.echo(
            f"researcher download: release {release_id}: {len(clips)} FLAC clips with "
            f"metadata.csv, README.md, SHA256SUMS and manifest.json in {target} "
            "(datasets.load_dataset loads the folder)"
        )

    def audit(self) -> None:
        """What ``chorus audit`` does: every check against the database and the store."""
        from chorus.app import prepare
        from chorus.audit import explain, run_audit

        database, store, policy, _keys = prepare(self.settings)
        try:
            report = run_audit(database=database, store=store, policy=policy)
        finally:
            database.dispose()
        self.outcome.audit_ok = report.ok
        self.outcome.audit_checks = len(report.results)
        for result in report.results:
            status = {"ok": "ok  ", "fail": "FAIL", "n/a": "n/a "}[result.status.value]
            self.echo(f"  audit {status} {result.name:<18} [{','.join(result.invariants)}]")
            for finding in result.findings:
                self.echo(f"       - {finding.check}: {finding.message}")
                self.echo(f"         likely cause: {explain(finding.check).cause}")
        verdict = "clean" if report.ok else f"{len(report.findings)} finding(s)"
        self.echo(f"audit: {verdict} ({len(report.results)} checks)")

    def import_course(self) -> None:
        from reports_ml.staple import load_staple

        if self.staple is None or not self.staple.is_file():
            self.echo("STAPLE file not found; the review queue part of the tour is skipped")
            return
        prompts = [
            {"prompt_id": p.prompt_id, "text": p.text, "accepted": [t.text for t in p.translations]}
            for p in load_staple(self.staple)
        ]
        body = _expect(
            self.client.put(
                f"/v1/courses/{COURSE}/prompts", json=prompts, headers=self.headers(Role.ADMIN)
            ),
            200,
            "import STAPLE course",
        )
        self.outcome.course_prompts = int(body["prompts"])
        self.echo(f"course {COURSE}: {body['prompts']} prompts from {self.staple.name}")
        self._submit_reports(prompts[:4])

    def _submit_reports(self, prompts: Sequence[dict[str, Any]]) -> None:
        """Learners' reports: near-misses of an accepted answer, one sent by three learners."""
        reports: list[tuple[str, str]] = []
        for prompt in prompts:
            best = str(prompt["accepted"][0])
            words = best.split()
            reports.append(
                (prompt["prompt_id"], " ".join(words[:-1]) if len(words) > 2 else best + " is")
            )
            reports.append((prompt["prompt_id"], " ".join(reversed(words))))
        reports.append((prompts[0]["prompt_id"], "xyz qqq zzz"))
        sent = 0
        for number, (prompt_id, answer) in enumerate(reports):
            for reporter in range(3 if number == 0 else 1):
                response = self.client.post(
                    "/v1/reports",
                    json={
                        "course": COURSE,
                        "prompt_id": prompt_id,
                        "answer": answer,
                        "reporter_id": f"reporter-{number}-{reporter}",
                    },
                    headers=self.headers(Role.APP),
                )
                if response.status_code not in (200, 201):
                    _expect(response, 201, "submit report")
                sent += 1
        self.echo(f"reports: {sent} learner reports submitted")

    def review_queue(self) -> None:
        if not self.outcome.course_prompts:
            return
        body = _expect(
            self.client.get(
                "/v1/reports/queue",
                params={"course": COURSE, "limit": 5},
                headers=self.headers(Role.CONTRIBUTOR),
            ),
            200,
            "review queue",
        )
        self.outcome.queue = body["items"]
        self.echo(
            f"review queue of {COURSE}: {body['open_reports']} open, ranked by "
            f"{body['scorer']['kind']} ({body['scorer']['note']}); top {len(body['items'])}:"
        )
        for item in body["items"]:
            self.echo(
                f"  {item['score']:.3f}  ×{item['times_reported']}  {item['prompt'][:40]!r} → "
                f"{item['answer'][:40]!r} (nearest accepted: {item['nearest_accepted']!r})"
            )


def run_demo(
    *,
    folder: Path = DEFAULT_DIR,
    fsdd: Path | None = None,
    staple: Path | None = None,
    reset: bool = False,
    echo: Echo = print,
    keep_running: Callable[[BackgroundServer], None] | None = None,
) -> DemoOutcome:
    """Run the whole tour under ``folder``; raises ConfigurationError when a step goes wrong.

    ``fsdd`` and ``staple`` default to what ``core.sample_data`` finds."""
    from chorus.app import create_app

    sample_data = find_sample_data()
    if sample_data is not None:
        fsdd = sample_data.fsdd if fsdd is None else fsdd
        staple = sample_data.staple_file(COURSE) if staple is None else staple
    started = time.monotonic()
    folder = folder.resolve()
    _prepare_folder(folder, reset=reset)
    outcome = DemoOutcome(folder=folder)
    private_pem, public_path = _make_consent_keys(folder)
    settings = demo_settings(folder, public_path)
    outcome.role_keys = _make_role_keys(settings, folder)
    echo(f"demo folder {folder}: SQLite, file store, consent key pair and one key per role")
    audio = AudioSource(fsdd)
    outcome.audio_source = audio.name
    if audio.recordings is None:
        echo(f"no FSDD recordings under {fsdd}; synthesizing a speech-like voice instead")
    else:
        echo(f"audio: FSDD recordings in {audio.recordings}")
    with (
        BackgroundServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60.0) as client,
    ):
        outcome.base_url = server.url
        echo(f"server: {server.url} (demo policy, k=5)")
        _Tour(
            outcome=outcome,
            settings=settings,
            client=client,
            keys=outcome.role_keys,
            private_pem=private_pem,
            audio=audio,
            staple=staple,
            echo=echo,
        ).run()
        outcome.seconds = time.monotonic() - started
        serving_url = server.url if keep_running is not None else None
        for line in _next_steps(outcome, public_path, serving_url=serving_url):
            echo(line)
        if keep_running is not None:
            keep_running(server)
    return outcome


def _next_steps(
    outcome: DemoOutcome, public_path: Path, *, serving_url: str | None
) -> Iterator[str]:
    """Where to look next; the URLs are the demo server's while it keeps serving, otherwise
    those of ``chorus serve`` on its default port."""
    folder = outcome.folder
    url = serving_url or f"http://127.0.0.1:{Settings.model_fields['port'].default}"
    yield f"done in {outcome.seconds:.1f} s. Where to look next:"
    yield f"  role keys:        {folder / 'keys' / 'role-keys.txt'} (shown once, keep private)"
    yield f"  consent keys:     {folder / 'keys'} (private.pem mints tokens: chorus consent mint)"
    yield f"  released batches: {folder / 'blobs' / 'releases'}"
    yield f"  downloaded batch: {folder / 'downloads'}"
    if serving_url is None:
        yield "  serve it again:"
        yield f"    export CHORUS_DATABASE_URL=sqlite:///{folder / 'chorus.db'}"
        yield f"    export CHORUS_STORAGE_URL=file://{folder / 'blobs'}"
        yield f"    export CHORUS_CONSENT_PUBLIC_KEY={public_path}"
        yield "    chorus serve        # or: chorus demo --dir DIR --reset --serve"
        yield "  then:"
    else:
        yield f"  the demo server keeps serving on {url}; with it:"
    yield f"    chorus releases list --url {url} --key <researcher key>"
    yield "    chorus audit"
    yield f"    {url}/review   (paste the contributor key)"
    yield f"    {url}/docs     (the API)"


# --- the command -----------------------------------------------------------------------------


def _wait_for_interrupt(server: BackgroundServer) -> None:
    typer.echo(f"serving on {server.url} until Ctrl-C (review console: {server.url}/review)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopping")


def demo(
    folder: Annotated[
        Path, typer.Option("--dir", help="folder for the demo's database, blobs and keys")
    ] = DEFAULT_DIR,
    fsdd: Annotated[
        Path | None,
        typer.Option(
            "--fsdd",
            help="the Free Spoken Digit Dataset (default: CHORUS_DATA_DIR, ../shared/data, else "
            "tests/data; synthesized if absent)",
        ),
    ] = None,
    staple: Annotated[
        Path | None,
        typer.Option(
            "--staple",
            help=f"a STAPLE gold file to import as a course (default: the {COURSE} file found "
            "beside the FSDD recordings)",
        ),
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="remove a previous demo in the folder first")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="keep serving after the tour until Ctrl-C")
    ] = False,
) -> None:
    """A whole tour on the embedded default: keys, uploads, refusals, a release, a researcher's
    download, the audit, a STAPLE course and the review queue."""
    try:
        outcome = run_demo(
            folder=folder,
            fsdd=fsdd,
            staple=staple,
            reset=reset,
            echo=typer.echo,
            keep_running=_wait_for_interrupt if serve else None,
        )
    except ChorusError as exc:
        typer.echo(f"chorus demo: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    if not outcome.audit_ok:
        raise typer.Exit(1)
