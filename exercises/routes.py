"""HTTP routes of the exercise catalog: the usage table that decides eligibility (P5)."""

from __future__ import annotations

from fastapi import APIRouter

from core.deps import AdminRole, DatabaseDep, SessionDep
from exercises.catalog import (
    count_eligible,
    count_usage,
    eligibility_cache,
    replace_usage,
    update_usage,
)
from exercises.models import (
    ExerciseUsageCreate,
    ExerciseUsageUpdate,
    UsageReplacedRead,
    UsageUpdatedRead,
)
from policies.deps import PolicyDep

router = APIRouter(tags=["exercises"])


@router.put(
    "/v1/exercises/usage",
    response_model=UsageReplacedRead,
    summary="Replace the exercise usage catalog",
)
def put_exercise_usage(
    entries: list[ExerciseUsageCreate],
    _role: AdminRole,
    session: SessionDep,
    database: DatabaseDep,
    policy: PolicyDep,
) -> UsageReplacedRead:
    exercises = replace_usage(session, entries)
    eligible = count_eligible(session, min_learners=policy.min_exercise_learners)
    session.commit()
    eligibility_cache(database).invalidate()
    return UsageReplacedRead(exercises=exercises, eligible=eligible)


@router.patch(
    "/v1/exercises/usage",
    response_model=UsageUpdatedRead,
    summary="Add or change exercise catalog entries, keeping the others",
)
def patch_exercise_usage(
    entries: list[ExerciseUsageUpdate],
    _role: AdminRole,
    session: SessionDep,
    database: DatabaseDep,
    policy: PolicyDep,
) -> UsageUpdatedRead:
    added, changed = update_usage(session, entries)
    eligible = count_eligible(session, min_learners=policy.min_exercise_learners)
    exercises = count_usage(session)
    session.commit()
    eligibility_cache(database).invalidate()
    return UsageUpdatedRead(added=added, changed=changed, exercises=exercises, eligible=eligible)
