"""The review API's race-prone paths on a real PostgreSQL (the scale-out database): concurrent
decisions on one report, concurrent identical reports, an acceptance with its outbox, and
concurrent writers of the model registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.settings import Settings
from tests.reports_ml.test_review_api import (  # collected again here, on PostgreSQL
    course,
    test_accepting_adds_the_answer_and_thanks_each_reporter,
    test_concurrent_decisions_on_one_report_have_one_winner,
    test_concurrent_identical_reports_join_one_report,
    test_second_decision_is_409_and_unknown_report_404,
)
from tests.reports_ml.test_review_retrain import (
    database,
    serving,
    test_a_retraining_run_that_finds_another_under_way_does_nothing,
    test_concurrent_writers_take_distinct_version_numbers,
)

pytestmark = pytest.mark.postgres

__all__ = [
    "course",
    "database",
    "serving",
    "test_a_retraining_run_that_finds_another_under_way_does_nothing",
    "test_accepting_adds_the_answer_and_thanks_each_reporter",
    "test_concurrent_decisions_on_one_report_have_one_winner",
    "test_concurrent_identical_reports_join_one_report",
    "test_concurrent_writers_take_distinct_version_numbers",
    "test_second_decision_is_409_and_unknown_report_404",
]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Iterator[Settings]:
    from chorus.devservers import provision_postgres_database

    with provision_postgres_database(prefix="chorus_review") as url:
        yield make_settings(database_url=url)
