"""Reading released batches for researchers.

Upholds P6 and P11: every query joins the release to its bucket and admits it only in state
``released``, and nothing here reads the pending prefix or pending rows.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aggregate.statistics import BatchStatistics, merge_all
from aggregate.tables import Bucket, Release, ReleasedClip
from core.errors import InvalidInput, NotFound

MAX_PAGE = 200


def _visible() -> sa.Select[Release]:
    return (
        sa.select(Release)
        .join(Bucket, Bucket.id == Release.bucket_id)
        .where(Bucket.state == "released")
    )


def _encode_cursor(release: Release) -> str:
    raw = f"{release.release_day.isoformat()}|{release.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.date, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        day, release_id = raw.split("|", 1)
        return dt.date.fromisoformat(day), release_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API returned") from None


def get_page(
    session: Session, *, limit: int, cursor: str | None, exercise_id: str | None = None
) -> tuple[list[Release], str | None]:
    """Released batches, newest day first, keyset-paged."""
    query = _visible()
    if exercise_id is not None:
        query = query.where(Release.exercise_id == exercise_id)
    if cursor:
        day, release_id = _decode_cursor(cursor)
        query = query.where(
            sa.or_(
                Release.release_day < day,
                sa.and_(Release.release_day == day, Release.id > release_id),
            )
        )
    rows = list(
        session.execute(
            query.order_by(Release.release_day.desc(), Release.id).limit(limit + 1)
        ).scalars()
    )
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def get(session: Session, release_id: str) -> Release:
    release = session.execute(_visible().where(Release.id == release_id)).scalar_one_or_none()
    if release is None:
        raise NotFound("no released batch with this id")
    return release


def get_clip(session: Session, *, release_id: str, clip_id: str) -> ReleasedClip:
    get(session, release_id)
    clip = session.execute(
        sa.select(ReleasedClip).where(
            ReleasedClip.release_id == release_id, ReleasedClip.id == clip_id
        )
    ).scalar_one_or_none()
    if clip is None:
        raise NotFound("no clip with this id in this release")
    return clip


def statistics_of(release: Release) -> BatchStatistics:
    return BatchStatistics.from_json(json.loads(release.statistics))


def aggregate(session: Session, exercise_id: str) -> tuple[int, BatchStatistics]:
    """Statistics merged over every released batch of an exercise."""
    releases = list(
        session.execute(
            sa.select(Release.statistics)
            .join(Bucket, Bucket.id == Release.bucket_id)
            .where(Bucket.state == "released", Release.exercise_id == exercise_id)
        ).scalars()
    )
    if not releases:
        raise NotFound("no released batch for this exercise")
    merged = merge_all(BatchStatistics.from_json(json.loads(text)) for text in releases)
    return len(releases), merged


def count_all_releases(session: Session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(Release)).scalar_one()


def get_releases_for_audit(session: Session, *, offset: int, limit: int) -> list[Release]:
    """Releases, newest release day first (ties by id, which says nothing about order)."""
    return list(
        session.execute(
            sa.select(Release)
            .order_by(Release.release_day.desc(), Release.id)
            .offset(offset)
            .limit(limit)
        ).scalars()
    )
