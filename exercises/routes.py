"""HTTP routes of the exercise catalog: the usage table that decides eligibility (P5)."""

from __future__ import annotations

from fastapi import APIRouter

from core.deps import AdminRole, DatabaseDep, SessionDep
from exercises.catalog import count_eligible, eligibility_cache, replace_usage
from exercises.models import ExerciseUsageCreate, UsageReplacedRead
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
