"""Features on hand-made reports in several languages and scripts."""

from __future__ import annotations

import math
import pickle
import unicodedata

import numpy as np
import pytest

from reports_ml.features import DENSE_FEATURES, FeatureExtractor, featurize, nearest_accepted
from reports_ml.models import ReportRecord

HU_ACCEPTED = (
    "rá gondolok éjjel nappal.",
    "éjjel nappal rá gondolok.",
    "én rá gondolok éjjel nappal.",
)


def _report(
    answer: str,
    accepted: tuple[str, ...],
    *,
    course: str = "en_hu",
    prompt_id: str = "p1",
    prompt: str = "i think about her night and day.",
    times_reported: int = 1,
) -> ReportRecord:
    return ReportRecord(
        report_id=f"{course}-{prompt_id}-{answer}",
        course=course,
        prompt_id=prompt_id,
        prompt=prompt,
        answer=answer,
        accepted=accepted,
        times_reported=times_reported,
    )


def _features(*reports: ReportRecord) -> list[dict[str, float]]:
    features = featurize(list(reports))
    return [dict(zip(DENSE_FEATURES, row.tolist(), strict=True)) for row in features.dense]


def _count(value: float) -> int:
    """Counts are stored as log1p(count)."""
    return round(math.expm1(value))


def test_answer_on_the_list_up_to_case_and_punctuation() -> None:
    (row,) = _features(_report("Éjjel-nappal rá gondolok!", HU_ACCEPTED, times_reported=4))
    assert row["same_up_to_punctuation_case"] == 1.0
    assert row["char_distance"] == 0.0
    assert row["word_distance"] == 0.0
    assert row["log_times_reported"] == pytest.approx(math.log1p(4))


def test_reordered_words_of_an_accepted_translation() -> None:
    (row,) = _features(_report("gondolok rá éjjel nappal", HU_ACCEPTED))
    assert row["same_words_reordered"] == 1.0
    assert row["same_up_to_punctuation_case"] == 0.0
    assert _count(row["new_words_unknown"]) == 0
    assert row["words_in_prompt_ratio"] == 1.0


def test_typo_is_an_unknown_word_close_to_a_known_one() -> None:
    (row,) = _features(_report("rá gondolak éjjel nappal", HU_ACCEPTED))
    assert _count(row["word_distance"]) == 1
    assert _count(row["new_words_unknown"]) == 1
    assert _count(row["new_words_near_known"]) == 1
    assert _count(row["char_distance"]) == 1
    assert row["char_similarity"] > 0.9
    assert row["words_in_prompt_ratio"] == pytest.approx(3 / 4)


def test_dropping_an_optional_word_differs_from_dropping_a_required_one() -> None:
    accepted = ("én rá gondolok éjjel és nappal.", "rá gondolok éjjel nappal.")
    optional, required = _features(
        _report("rá gondolok éjjel és nappal", accepted),  # "én" is left out by the second
        _report("rá éjjel nappal", accepted),  # "gondolok" is in both
    )
    assert _count(optional["words_missing"]) + _count(optional["words_extra"]) == 1
    assert _count(optional["required_words_missing"]) == 0
    assert _count(required["words_missing"]) == 1
    assert _count(required["words_extra"]) == 0
    assert required["word_overlap_ratio"] == pytest.approx(3 / 4)
    assert _count(required["required_words_missing"]) == 1


def test_missing_accents_portuguese() -> None:
    (row,) = _features(
        _report(
            "Voce esta aqui",
            ("você está aqui.", "tu estás aqui."),
            course="en_pt",
            prompt="you are here.",
        )
    )
    assert row["same_up_to_accents"] == 1.0
    assert row["accentless_char_distance"] == 0.0
    assert _count(row["char_distance"]) == 2  # one combining accent each, not a whole letter
    assert _count(row["new_words_unknown"]) == 2
    assert _count(row["new_words_near_known"]) == 2


def test_untranslated_english_word_vietnamese() -> None:
    (row,) = _features(
        _report(
            "đức là một nước ở europe",
            ("đức là một nước ở châu âu.",),
            course="en_vi",
            prompt="germany is a country in europe.",
        )
    )
    assert _count(row["new_words_in_source"]) == 1
    assert _count(row["words_missing"]) == 2  # "châu âu" for "europe"
    assert _count(row["words_extra"]) == 1


def test_spacing_only_vietnamese_and_word_from_elsewhere_in_the_course() -> None:
    spacing, elsewhere, _other_prompt = _features(
        _report("đức là mộtnước ở châu âu", ("đức là một nước ở châu âu.",), course="en_vi"),
        _report(
            "đức là một con mèo ở châu âu",
            ("đức là một nước ở châu âu.",),
            course="en_vi",
            prompt_id="p2",
        ),
        _report("tôi có một con mèo", ("tôi có một con mèo.",), course="en_vi", prompt_id="p3"),
    )
    assert spacing["same_up_to_spacing"] == 1.0
    assert _count(elsewhere["new_words_in_course"]) == 2  # "con" and "mèo" from prompt p3
    assert _count(elsewhere["new_words_unknown"]) == 0


def test_japanese_without_spaces_is_compared_by_characters() -> None:
    (row,) = _features(
        _report(
            "私は学生だ。",
            ("私は学生です。", "わたしは学生です。"),
            course="en_ja",
            prompt="i am a student.",
        )
    )
    assert row["same_up_to_punctuation_case"] == 0.0
    assert _count(row["answer_words"]) == 5
    assert _count(row["word_distance"]) == 2  # だ for で, す missing
    assert _count(row["new_words_unknown"]) == 1


@pytest.mark.parametrize(
    ("answer", "accepted", "accents"),
    [
        ("انا طالب", ("أنا طالب.",), 1.0),  # Arabic: hamza left out
        ("मैं छात्र हूं", ("मैं छात्र हूँ।",), 0.0),  # Devanagari: anusvara for chandrabindu
    ],
)
def test_scripts_without_case(answer: str, accepted: tuple[str, ...], accents: float) -> None:
    (row,) = _features(_report(answer, accepted, course="en_xx", prompt="i am a student."))
    assert row["same_up_to_accents"] == accents
    assert _count(row["word_distance"]) == 1
    assert _count(row["char_distance"]) == 1


def test_empty_accepted_list_is_scored_without_error() -> None:
    (row,) = _features(_report("szia", ()))
    assert _count(row["words_extra"]) == 1
    assert row["accepted_count"] == 0.0


def test_batch_and_single_features_agree() -> None:
    reports = [
        _report(answer, HU_ACCEPTED, times_reported=i + 1)
        for i, answer in enumerate(["rá gondolok", "éjjel nappal rá gondolok", "én gondolak"])
    ]
    extractor = FeatureExtractor()
    batch = extractor.transform(reports)
    for i, report in enumerate(reports):
        single = extractor.transform([report])
        assert np.array_equal(single.dense[0], batch.dense[i])
        assert (single.hashed[0] != batch.hashed[i]).nnz == 0


def test_worker_processes_give_the_same_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reports_ml.features._MIN_PARALLEL_REPORTS", 10)
    reports = [
        _report(f"{answer} {i}", HU_ACCEPTED, prompt_id=f"p{i % 7}", times_reported=i % 3 + 1)
        for i, answer in enumerate(["rá gondolok", "éjjel nappal rá", "én gondolak"] * 20)
    ]
    serial = FeatureExtractor().transform(reports)
    steps: list[int] = []
    parallel = FeatureExtractor().transform(reports, n_jobs=2, progress=steps.append)
    assert sum(steps) == len(reports)
    assert np.array_equal(serial.dense, parallel.dense)
    assert (serial.hashed != parallel.hashed).nnz == 0


def test_a_newly_accepted_answer_changes_its_features() -> None:
    extractor = FeatureExtractor()
    answer = "gondolok rá éjjel és nappal"
    before = extractor.transform([_report(answer, HU_ACCEPTED)])
    after = extractor.transform([_report(answer, (*HU_ACCEPTED, answer + "."))])
    same = DENSE_FEATURES.index("same_up_to_punctuation_case")
    assert (before.dense[0, same], after.dense[0, same]) == (0.0, 1.0)


def test_ngram_features_hash_words_and_bigrams_only() -> None:
    extractor = FeatureExtractor("ngram", hash_bits=12)
    features = extractor.transform([_report("rá gondolok", HU_ACCEPTED)])
    assert features.dense.shape == (1, 0)
    assert features.hashed.shape == (1, 4096)
    assert features.hashed.sum() == 5  # 2 words + 3 bigrams with sentence boundaries


def test_nearest_accepted_counts_words() -> None:
    assert nearest_accepted("Gondolok rá éjjel és nappal", HU_ACCEPTED) == 0
    assert nearest_accepted("én rá gondolok éjjel", HU_ACCEPTED) == 2
    assert nearest_accepted("szia", ()) is None


def test_korean_is_compared_by_jamo_and_thai_without_spaces_by_characters() -> None:
    slip, thai = _features(
        _report("나는 학생입니닥", ("나는 학생입니다.",), course="en_ko"),  # 다 -> 닥: one jamo
        _report("ฉันเป็นนักเรียบ", ("ฉันเป็นนักเรียน",), course="en_th"),
    )
    assert _count(slip["char_distance"]) == 1
    assert slip["char_similarity"] > 0.9
    assert _count(slip["word_distance"]) == 1
    assert _count(thai["char_distance"]) == 1
    assert _count(thai["answer_words"]) == 1  # Thai runs without spaces are one token


class _LooseReport:
    """A report as the review service may hold it: nothing checked at the boundary."""

    def __init__(self, answer: str, accepted: tuple[str, ...], prompt_id: str = "p1") -> None:
        self.course, self.prompt_id, self.prompt = "en_xx", prompt_id, "i am a student."
        self.answer, self.accepted, self.times_reported = answer, accepted, 1


def test_odd_reports_get_finite_features_in_one_batch() -> None:
    reports = [
        _LooseReport("", ("én diák vagyok.",)),  # no words at all
        _LooseReport("?!…", ("én diák vagyok.",)),  # only punctuation
        _LooseReport("diák vagyok", ("én diák vagyok.",), prompt_id="p2"),  # one accepted
        _LooseReport("ᎠᏍᎦᏯ ᏗᏂᏲᏟ", ("ᎠᏍᎦᏯ ᏗᏂᏲᎵ",), prompt_id="p3"),  # Cherokee: never seen
        _LooseReport("vagyok " * 1_430, ("én diák vagyok.",), prompt_id="p4"),  # 10,010 chars
        _LooseReport("diák", (), prompt_id="p5"),  # nothing accepted yet
    ]
    features = FeatureExtractor().transform(reports)
    assert features.dense.shape == (len(reports), len(DENSE_FEATURES))
    assert np.isfinite(features.dense).all()


def test_a_blend_of_two_accepted_translations_is_covered_by_a_prefix_and_a_suffix() -> None:
    accepted = ("rá gondolok éjjel nappal.", "én arra gondolok minden nap.")
    blend, truncated, paraphrase = _features(
        _report("rá gondolok minden nap", accepted),  # first half of one, second of the other
        _report("rá gondolok éjjel", accepted),  # the end left off
        _report("mindig rá gondolok", accepted),
    )
    assert blend["prefix_suffix_cover"] >= 1.0
    assert paraphrase["prefix_suffix_cover"] < 1.0
    assert truncated["prefix_share"] == 1.0  # the start of an accepted translation
    assert truncated["end_seen_in_prompt"] == 0.0  # but no accepted translation ends so
    assert truncated["start_seen_in_prompt"] == 1.0
    assert blend["end_seen_in_prompt"] == 1.0
    assert paraphrase["start_seen_in_prompt"] == 0.0


def test_each_place_an_answer_departs_from_the_accepted_letters_is_one_run() -> None:
    one_slip, two_slips = _features(
        _report("rá gondolok éjjel napal", HU_ACCEPTED),
        _report("rá gondalok éjjel napal", HU_ACCEPTED),
    )
    assert _count(one_slip["unseen_trigram_runs_prompt"]) == 1
    assert _count(two_slips["unseen_trigram_runs_prompt"]) == 2
    assert one_slip["char_4grams_in_prompt_ratio"] > two_slips["char_4grams_in_prompt_ratio"]


def test_letters_in_common_with_the_nearest_translation() -> None:
    (row,) = _features(_report("rá gondolok éjjel", ("rá gondolok éjjel nappal.",)))
    assert row["char_extra_ratio"] == 0.0  # every letter of the answer is in the translation
    # Letters count in canonical decomposition: "á" and "é" are two each.
    whole = unicodedata.normalize("NFD", "rá gondolok éjjel nappal")
    assert row["char_missing_ratio"] == pytest.approx(len(" nappal") / len(whole))


def test_a_loaded_extractor_indexes_known_prompts_in_its_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("reports_ml.features._MIN_PARALLEL_REPORTS", 10)
    reports = [
        _report(f"{answer} {i}", HU_ACCEPTED, prompt_id=f"p{i % 7}", times_reported=i % 3 + 1)
        for i, answer in enumerate(["rá gondolok", "éjjel nappal rá", "én gondolak"] * 20)
    ]
    trained = FeatureExtractor()
    expected = trained.transform(reports)
    # As after loading a saved model: the course vocabularies hold every list, no prompt index
    # is cached, and each worker indexes its own prompts.
    loaded = pickle.loads(pickle.dumps(trained))  # noqa: S301  # pickled just above
    assert not loaded._prompts
    assert np.array_equal(loaded.transform(reports, n_jobs=2).dense, expected.dense)
    assert not loaded._prompts  # nothing was indexed in this process
    assert np.array_equal(loaded.transform(reports).dense, expected.dense)
