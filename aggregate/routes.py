"""The researcher API: released batches, their clips and per-exercise statistics; and the
auditor's list of releases with their thresholds.

P6/P11: every researcher route needs the ``researcher`` role, the audit list the ``auditor``
role; all read only released batches, and no route reaches the pending prefix.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from aggregate import downloads, service
from aggregate.models import (
    AggregateRead,
    AuditReleasePage,
    AuditReleaseRead,
    ManifestRead,
    ReleasePageRead,
    ReleaseSummaryRead,
)
from aggregate.release import shard_key
from aggregate.tables import Release
from core.deps import AuditorRole, ResearcherRole, SessionDep, StoreDep
from core.errors import NotFound, PresignedUrlUnsupported
from core.handlers import problem_responses
from core.text import StorableText
from policies.deps import PolicyDep

router = APIRouter(tags=["releases"])
# The auditor's view of the same releases: every threshold each one met (P6, P8).
audit_router = APIRouter(prefix="/v1/audit", tags=["audit"])
PRESIGNED_TTL_S = 300
ReleaseId = Annotated[StorableText, Path(max_length=200)]
ClipId = Annotated[StorableText, Path(max_length=200)]
ExerciseIdParam = Annotated[StorableText, Path(max_length=200)]


def _summary(release: Release) -> ReleaseSummaryRead:
    return ReleaseSummaryRead(
        release_id=release.id,
        exercise_id=release.exercise_id,
        language=release.language,
        release_day=release.release_day,
        clip_count=release.clip_count,
        contributor_count=release.contributor_count,
        k=release.k_in_force,
        policy_hash=release.policy_hash,
    )


@router.get("/v1/releases", response_model=ReleasePageRead)
def list_releases(
    _role: ResearcherRole,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[StorableText | None, Query(max_length=200)] = None,
    exercise_id: Annotated[StorableText | None, Query(max_length=200)] = None,
) -> ReleasePageRead:
    """Released batches, newest release day first."""
    releases, next_cursor = service.get_page(
        session, limit=limit, cursor=cursor, exercise_id=exercise_id
    )
    return ReleasePageRead(items=[_summary(r) for r in releases], next_cursor=next_cursor)


@router.get(
    "/v1/releases/{release_id}",
    response_class=StreamingResponse,
    responses={
        200: {"model": ManifestRead, "content": {"application/json": {}}},
        **problem_responses(NotFound),
    },
)
def get_release(
    release_id: ReleaseId, _role: ResearcherRole, session: SessionDep, store: StoreDep
) -> StreamingResponse:
    """The release manifest (clip ids, durations, sample rates) with its statistics."""
    release = service.get(session, release_id)
    return StreamingResponse(store.stream(release.manifest_key), media_type="application/json")


CLIP_SUFFIX = ".flac"


@router.get(
    "/v1/releases/{release_id}/clips/{clip_id}",
    response_class=Response,
    responses={
        200: {"content": {"audio/flac": {}}, "description": "the clip"},
        **problem_responses(NotFound),
    },
)
def get_clip(
    release_id: ReleaseId,
    clip_id: ClipId,
    _role: ResearcherRole,
    session: SessionDep,
    store: StoreDep,
) -> Response:
    """One released clip as FLAC, read out of its shard. ``clip_id`` is the clip's id as the
    manifest gives it, or its member name in the shards and the archive (``{id}.flac``)."""
    clip = service.get_clip(
        session, release_id=release_id, clip_id=clip_id.removesuffix(CLIP_SUFFIX)
    )
    if clip.shard is None or clip.member_offset is None or clip.member_size is None:
        # A release made before releases were sharded keeps one object per clip.
        return StreamingResponse(
            store.stream(clip.object_key),
            media_type="audio/flac",
            headers={"Content-Disposition": f'attachment; filename="{clip.id}.flac"'},
        )
    data = store.get_range(shard_key(release_id, clip.shard), clip.member_offset, clip.member_size)
    return Response(
        data,
        media_type="audio/flac",
        headers={"Content-Disposition": f'attachment; filename="{clip.id}.flac"'},
    )


_FILE_TYPES = {
    ".tar": "application/x-tar",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".md": "text/markdown",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
}


@router.head("/v1/releases/{release_id}/files/{name:path}", include_in_schema=False)
@router.get(
    "/v1/releases/{release_id}/files/{name:path}",
    response_class=Response,
    responses={
        200: {"description": "the file"},
        206: {"description": "the range asked for"},
        307: {"description": "with ?presigned=true on an S3 store: a short-lived URL"},
        **problem_responses(NotFound, PresignedUrlUnsupported),
    },
)
def get_release_file(
    release_id: ReleaseId,
    name: Annotated[StorableText, Path(max_length=200)],
    request: Request,
    _role: ResearcherRole,
    session: SessionDep,
    store: StoreDep,
    presigned: Annotated[
        bool,
        Query(
            description="redirect to a presigned URL (S3 stores, at "
            "their public endpoint); 501 presigned_unsupported on a "
            "store that has none"
        ),
    ] = False,
) -> Response:
    """One file of the release's dataset: ``README.md``, ``metadata.csv``, ``metadata.jsonl``,
    ``validated.tsv``, ``clip_durations.tsv``, ``SHA256SUMS``, ``manifest.json`` or
    ``shards/shard-NNNNN.tar``. Answers ``HEAD`` and a ``Range``, with ``Content-Length``."""
    release = service.get(session, release_id)
    segments = downloads.file_segments(store, release, name)
    if presigned and request.method == "GET":
        url = store.presigned_url(segments[0].key or "", expires_s=PRESIGNED_TTL_S)
        if url is None:
            # Streaming instead would hand a client that wants a URL the whole file.
            raise PresignedUrlUnsupported(
                "this service's blob store makes no presigned URLs (a file store); "
                "fetch the file without ?presigned=true"
            )
        return RedirectResponse(url, status_code=307)
    suffix = name[name.rfind(".") :] if "." in name else ""
    return downloads.ranged_response(
        request,
        store,
        segments,
        media_type=_FILE_TYPES.get(suffix, "application/octet-stream"),
        filename=name.rsplit("/", 1)[-1],
    )


@router.head("/v1/releases/{release_id}/archive", include_in_schema=False)
@router.get(
    "/v1/releases/{release_id}/archive",
    response_class=Response,
    responses={
        200: {"content": {"application/x-tar": {}}},
        206: {"description": "the range asked for"},
        **problem_responses(NotFound),
    },
)
def get_archive(
    release_id: ReleaseId,
    request: Request,
    _role: ResearcherRole,
    session: SessionDep,
    store: StoreDep,
) -> Response:
    """The release's dataset folder as one tar (card, tables, checksums, manifest, clips).
    Answers ``HEAD`` and a ``Range``, with ``Content-Length``; unpack it into an empty folder."""
    release = service.get(session, release_id)
    return downloads.ranged_response(
        request,
        store,
        downloads.archive_segments(store, release),
        media_type="application/x-tar",
        filename=f"{release.id}.tar",
    )


@router.get(
    "/v1/aggregates/{exercise_id}",
    response_model=AggregateRead,
    responses=problem_responses(NotFound),
)
def get_aggregate(exercise_id: ExerciseIdParam, _role: ResearcherRole, session: SessionDep) -> Any:
    """Statistics over every released batch of an exercise."""
    count, stats = service.aggregate(session, exercise_id)
    return AggregateRead.model_validate(
        {"exercise_id": exercise_id, "release_count": count, "statistics": stats.to_json()}
    )


@audit_router.get("/releases", response_model=AuditReleasePage)
def get_audit_releases(
    policy: PolicyDep,
    _role: AuditorRole,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # bounded: SQL integers are 64-bit
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditReleasePage:
    """Every release with its contributor count, clip count and the k in force."""
    policy_k = policy.k
    items = [
        AuditReleaseRead(
            id=release.id,
            exercise_id=release.exercise_id,
            language=release.language,
            release_day=release.release_day,
            clip_count=release.clip_count,
            contributor_count=release.contributor_count,
            k_in_force=release.k_in_force,
            policy_hash=release.policy_hash,
            meets_k=release.contributor_count >= max(release.k_in_force, policy_k),
        )
        for release in service.get_releases_for_audit(session, offset=offset, limit=limit)
    ]
    return AuditReleasePage(
        items=items, total=service.count_all_releases(session), offset=offset, limit=limit
    )
