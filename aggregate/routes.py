"""The researcher API: released batches, their clips and per-exercise statistics; and the
auditor's list of releases with their thresholds.

P6/P11: every researcher route needs the ``researcher`` role, the audit list the ``auditor``
role; all read only released batches, and no route reaches the pending prefix.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from aggregate import service
from aggregate.models import (
    AggregateRead,
    AuditReleasePage,
    AuditReleaseRead,
    ManifestRead,
    ReleasePageRead,
    ReleaseSummaryRead,
)
from aggregate.tables import Release
from core.deps import AuditorRole, DatabaseDep, ResearcherRole, SessionDep, StoreDep
from core.errors import NotFound
from core.handlers import problem_responses
from policies.deps import PolicyDep

router = APIRouter(tags=["releases"])
# The auditor's view of the same releases: every threshold each one met (P6, P8).
audit_router = APIRouter(prefix="/v1/audit", tags=["audit"])
PRESIGNED_TTL_S = 300


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
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    exercise_id: Annotated[str | None, Query(max_length=200)] = None,
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
    release_id: str, _role: ResearcherRole, session: SessionDep, store: StoreDep
) -> StreamingResponse:
    """The release manifest (clip ids, durations, sample rates) with its statistics."""
    release = service.get(session, release_id)
    return StreamingResponse(store.stream(release.manifest_key), media_type="application/json")


@router.get(
    "/v1/releases/{release_id}/clips/{clip_id}",
    response_class=Response,
    responses={
        200: {"content": {"audio/flac": {}}, "description": "the clip (file store)"},
        307: {"description": "a short-lived presigned URL of the clip (S3 store)"},
        **problem_responses(NotFound),
    },
)
def get_clip(
    release_id: str, clip_id: str, _role: ResearcherRole, session: SessionDep, store: StoreDep
) -> Response:
    """One released clip as FLAC."""
    clip = service.get_clip(session, release_id=release_id, clip_id=clip_id)
    url = store.presigned_url(clip.object_key, expires_s=PRESIGNED_TTL_S)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    return StreamingResponse(
        store.stream(clip.object_key),
        media_type="audio/flac",
        headers={"Content-Disposition": f'attachment; filename="{clip.id}.flac"'},
    )


@router.get(
    "/v1/releases/{release_id}/archive",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-tar": {}}}, **problem_responses(NotFound)},
)
def get_archive(
    release_id: str,
    _role: ResearcherRole,
    session: SessionDep,
    database: DatabaseDep,
    store: StoreDep,
) -> StreamingResponse:
    """The whole batch (manifest and clips) as a streamed tar."""
    release = service.get(session, release_id)
    session.expunge(release)
    return StreamingResponse(
        service.stream_archive(database, store, release),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{release.id}.tar"'},
    )


@router.get(
    "/v1/aggregates/{exercise_id}",
    response_model=AggregateRead,
    responses=problem_responses(NotFound),
)
def get_aggregate(exercise_id: str, _role: ResearcherRole, session: SessionDep) -> Any:
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
