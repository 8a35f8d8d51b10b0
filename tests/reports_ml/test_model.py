"""Train, save, load and score: the model file, its card and its refusal of other versions."""

from __future__ import annotations

import functools
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sklearn

from core.errors import InvalidInput
from reports_ml.evaluate import roc_auc_score
from reports_ml.features import FeatureExtractor
from reports_ml.model import (
    FORMAT_VERSION,
    ReportModel,
    card_path,
    split_by_prompt,
    train_model,
    training_data_sha256,
)
from reports_ml.models import ModelCard, ReportLike, ReportRecord
from reports_ml.prompt_index import accepted_digest
from reports_ml.simulate import simulate_reports
from reports_ml.staple import load_staple
from tests.datasets import STAPLE_DIR as STAPLE


@functools.cache
def _records() -> tuple[ReportRecord, ...]:
    prompts = {
        "en_pt": load_staple(STAPLE / "excerpt.en_pt.gold.txt")[:60],
        "en_vi": load_staple(STAPLE / "excerpt.en_vi.gold.txt")[:60],
    }
    return tuple(simulate_reports(prompts, seed=21))


@functools.cache
def _split() -> tuple[list[ReportRecord], list[ReportRecord]]:
    records = _records()
    train, test = split_by_prompt(records, 0.3, random_state=0)
    return [records[i] for i in train], [records[i] for i in test]


@functools.cache
def _trained() -> ReportModel:
    return train_model(_split()[0], random_state=0)


def test_train_save_load_score_round_trip(tmp_path: Path) -> None:
    train, test = _split()
    model = _trained()
    before = model.score(test)
    path = model.save(tmp_path / "models" / "scorer.joblib")
    loaded = ReportModel.load(path)
    after = loaded.score(test)
    assert np.array_equal(before, after)
    assert ((after >= 0) & (after <= 1)).all()
    assert [loaded.score_one(r) for r in test[:5]] == pytest.approx(after[:5].tolist(), abs=1e-12)

    card = ModelCard.model_validate_json(card_path(path).read_text(encoding="utf-8"))
    assert card.format_version == FORMAT_VERSION
    assert card.feature_set == "full"
    assert card.n_reports == len(train)
    assert card.n_correct == sum(bool(r.label) for r in train)
    assert set(card.courses) == {"en_pt", "en_vi"}
    assert card.training_data_sha256 == training_data_sha256(train)
    assert "new_words_unknown" in card.feature_names
    assert "char_similarity" in card.feature_names
    # What it is for and not, its labels and their licence, and what it ran on.
    assert "contributor decides every report" in card.intended_use
    assert any("simulated labels" in limitation for limitation in card.limitations)
    assert card.label_source == "unknown"  # train_model's default: nobody said
    assert card.data_licence == "unspecified"
    assert card.sklearn_version == sklearn.__version__
    assert card.python_version == platform.python_version()


def test_card_names_simulated_labels_and_the_staple_licence() -> None:
    train, _ = _split()
    card = train_model(train[:300], label_source="simulated").card
    assert card is not None
    assert card.label_source == "simulated"
    assert card.data_licence.startswith("CC BY-NC 4.0")
    assert "STAPLE" in card.data_licence
    custom = train_model(train[:300], label_source="reviewers", data_licence="ours").card
    assert custom is not None
    assert (custom.label_source, custom.data_licence) == ("reviewers", "ours")


def test_a_card_written_before_these_fields_still_reads() -> None:
    old = _trained().card
    assert old is not None
    fields = old.model_dump(
        exclude={
            "intended_use",
            "limitations",
            "label_source",
            "data_licence",
            "sklearn_version",
            "python_version",
        }
    )
    assert ModelCard.model_validate(fields).label_source == "unknown"


def test_model_ranks_held_out_prompts_better_than_counting() -> None:
    _, test = _split()
    labels = np.array([bool(r.label) for r in test])
    counts = np.array([r.times_reported for r in test])
    assert roc_auc_score(labels, _trained().score(test)) > roc_auc_score(labels, counts) + 0.1


def test_no_prompt_is_in_both_parts_of_a_split() -> None:
    train, test = _split()
    assert {r.prompt_id for r in train}.isdisjoint({r.prompt_id for r in test})
    assert len(train) + len(test) == len(_records())


def test_loading_a_model_of_another_format_version_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "old.joblib"
    joblib.dump({"kind": "chorus-report-scorer", "format_version": 0, "model": _trained()}, path)
    with pytest.raises(InvalidInput) as caught:
        ReportModel.load(path)
    assert "model format version 0" in caught.value.detail
    assert f"reads version {FORMAT_VERSION}" in caught.value.detail
    assert "chorus reports train" in caught.value.detail


def test_loading_a_model_with_other_features_fails_clearly(tmp_path: Path) -> None:
    model = train_model(_split()[0][:400])
    model.extractor.dense_names = model.extractor.dense_names[:-1]
    path = model.save(tmp_path / "model.joblib")
    with pytest.raises(InvalidInput, match="trained on other features"):
        ReportModel.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a pickle", "not a report model file"), (None, "no model file there")],
)
def test_loading_something_else_fails_clearly(
    tmp_path: Path,
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / "model.joblib"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        ReportModel.load(path)


def test_a_pickled_dict_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)
    with pytest.raises(InvalidInput, match="not a report model file"):
        ReportModel.load(path)


def test_training_needs_both_classes_and_scoring_needs_training() -> None:
    wrong_only = [r for r in _records() if not r.label][:50]
    with pytest.raises(InvalidInput, match="needs correct and incorrect"):
        ReportModel().fit(wrong_only)
    with pytest.raises(InvalidInput, match="not trained"):
        ReportModel().score(wrong_only)


def test_unlabelled_records_are_left_out_of_training(tmp_path: Path) -> None:
    train, _ = _split()
    unlabelled = [r.model_copy(update={"label": None}) for r in train[:100]]
    model = train_model([*train[100:], *unlabelled])
    assert model.card is not None
    assert model.card.n_reports == len(train) - 100


def test_training_data_hash_follows_labels() -> None:
    train, _ = _split()
    flipped = [train[0].model_copy(update={"label": not train[0].label}), *train[1:]]
    assert training_data_sha256(train) != training_data_sha256(flipped)
    assert re.fullmatch("[0-9a-f]{64}", training_data_sha256(train))


class _LooseReport:
    """A report as the review service may hold it: nothing checked at the boundary."""

    def __init__(self, answer: str, accepted: tuple[str, ...], prompt_id: str) -> None:
        self.course, self.prompt_id, self.prompt = "en_xx", prompt_id, "you are here."
        self.answer, self.accepted, self.times_reported = answer, accepted, 1


def test_odd_reports_are_scored_without_disturbing_the_rest_of_the_batch() -> None:
    _, test = _split()
    model = _trained()
    odd = [
        _LooseReport("", ("você está aqui.",), "odd1"),  # no words
        _LooseReport("...", ("você está aqui.",), "odd2"),  # punctuation only
        _LooseReport("você aqui", ("você está aqui.",), "odd3"),  # one accepted answer
        _LooseReport("ᎠᏍᎦᏯ ᏗᏂᏲᏟ", ("ᎠᏍᎦᏯ ᏗᏂᏲᎵ",), "odd4"),  # a script never seen
        _LooseReport("está " * 2_000, ("você está aqui.",), "odd5"),  # 10,000 characters
        # A lone surrogate (a JSON file may hold one, as an escape): in the answer and the list.
        _LooseReport("você \ud800 aqui", ("você está aqui.", "tu \udfff aqui."), "odd6"),
    ]
    ordinary = test[:20]
    scores = model.score([*odd, *ordinary])
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[len(odd) :] == pytest.approx(model.score(ordinary).tolist(), abs=1e-12)
    assert model.score_one(odd[4]) == pytest.approx(scores[4], abs=1e-12)


def test_scores_are_calibrated_on_held_out_prompts() -> None:
    _, test = _split()
    labels = np.array([bool(r.label) for r in test])
    scores = _trained().score(test)
    # The mean score is near the share of correct reports, and the reports scored above 0.5
    # are mostly correct ones.
    assert abs(scores.mean() - labels.mean()) < 0.05
    assert labels[scores > 0.5].mean() > 0.5


def test_a_model_stacking_the_ngram_regression_round_trips(tmp_path: Path) -> None:
    train, test = _split()
    model = ReportModel(stack_ngrams=True, hash_bits=14).fit(train)
    loaded = ReportModel.load(model.save(tmp_path / "stacked.joblib"))
    assert np.array_equal(loaded.score(test), model.score(test))
    assert model.card is not None
    assert any("stacked regression" in name for name in model.card.feature_names)


def test_flat_trees_give_the_same_log_odds_as_scikit_learn() -> None:
    _, test = _split()
    model = _trained()
    features = model.extractor.transform(test)
    assert model._trees is not None
    assert model._flat is not None
    design = features.dense.astype(np.float32)
    design[::7, 3] = np.nan  # missing values take the side the tree learnt
    expected = model._trees.decision_function(design)
    assert model._flat.decision_function(design) == pytest.approx(expected.tolist(), abs=1e-9)


def test_large_batches_go_through_the_trees_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    _, test = _split()
    model = _trained()
    features = model.extractor.transform(test)
    assert model._trees is not None
    expected = model._trees.decision_function(features.dense.astype(np.float32))
    monkeypatch.setattr("reports_ml.model._FLAT_ROWS", 0)
    monkeypatch.setattr("reports_ml.model._TREE_BLOCK_ROWS", 7)  # blocks and a short last one
    assert len(test) % 7
    assert model.decision_function(features).tolist() == expected.tolist()


def test_worker_processes_give_the_same_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reports_ml.features._MIN_PARALLEL_REPORTS", 10)
    _, test = _split()
    serial = _trained().score(test)
    steps: list[int] = []
    parallel = _trained().score(test, n_jobs=2, progress=steps.append)
    assert sum(steps) == len(test)
    assert parallel == pytest.approx(serial.tolist(), abs=1e-12)


def test_only_the_reports_the_trees_learn_from_get_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, test = _split()
    featurized: list[int] = []
    transform = FeatureExtractor.transform

    def counting(self: FeatureExtractor, reports: Sequence[ReportLike], **kwargs: Any) -> Any:
        featurized.append(len(reports))
        return transform(self, reports, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "transform", counting)
    steps: list[int] = []
    model = ReportModel(max_tree_rows=300, trees=20).fit(train, progress=steps.append)
    assert featurized == [300]
    assert sum(steps) == len(train)  # the progress bar still ends at every report
    # Every training prompt's accepted list is in its course's vocabulary all the same.
    courses = model.extractor._courses
    assert all(courses[r.course].holds(accepted_digest(r.accepted)) for r in train)
    monkeypatch.undo()
    labels = np.array([bool(r.label) for r in test])
    assert roc_auc_score(labels, model.score(test)) > 0.8
