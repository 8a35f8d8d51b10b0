"""Answer normalization and tokenization across scripts."""

from __future__ import annotations

import unicodedata

import pytest

from reports_ml.text import (
    normalize_answer,
    normalize_answers,
    strip_accents,
    strip_accents_all,
    strip_accents_decomposed,
    tokenize,
)


@pytest.mark.parametrize(
    ("typed", "grouped"),
    [
        ("Éjjel-nappal  rá gondolok!", "éjjel nappal rá gondolok"),  # Hungarian
        ("  Você está AQUI? ", "você está aqui"),  # Portuguese
        ("Nước Đức là một nước ở Châu Âu.", "nước đức là một nước ở châu âu"),  # Vietnamese
        ("私は学生です。", "私は学生です"),  # Japanese full stop
        ("أنا طالب، هل أنت؟", "أنا طالب هل أنت"),  # Arabic comma and question mark
        ("मैं छात्र हूँ।", "मैं छात्र हूँ"),  # Devanagari danda
        ("«Olá», disse ele…", "olá disse ele"),
    ],
)
def test_normalize_answer_groups_case_punctuation_and_spacing(typed: str, grouped: str) -> None:
    assert normalize_answer(typed) == grouped


def test_normalize_answer_keeps_accents_and_composes() -> None:
    decomposed = "nu\u031bo\u031b\u0301c"  # "nước" typed with combining marks
    assert normalize_answer(decomposed) == "nước"
    assert normalize_answer("vo") != normalize_answer("vó")
    assert normalize_answer("İstanbul") == normalize_answer("i̇stanbul")


def test_normalize_answer_of_punctuation_only_is_empty() -> None:
    assert normalize_answer(" ?! … ") == ""


def test_tokenize_splits_spaceless_scripts_into_characters() -> None:
    assert tokenize(normalize_answer("私は学生です。")) == ["私", "は", "学", "生", "で", "す"]
    assert tokenize("tôi là 学生") == ["tôi", "là", "学", "生"]


def test_tokenize_keeps_words_with_combining_signs_whole() -> None:
    assert tokenize(normalize_answer("मैं छात्र हूँ।")) == ["मैं", "छात्र", "हूँ"]
    assert tokenize(normalize_answer("أنا طالب")) == ["أنا", "طالب"]
    assert tokenize("bem o que o chefe disse") == ["bem", "o", "que", "o", "chefe", "disse"]


def test_strip_accents_removes_diacritics_but_not_indic_letters() -> None:
    assert strip_accents("nước đức châu âu") == "nuoc đuc chau au"
    assert strip_accents("você está") == "voce esta"
    assert strip_accents("أنا") == "انا"  # hamza above is a combining mark
    assert strip_accents("छात्र") == "छात्र"  # the virama builds the letter: kept


def test_list_versions_agree_with_one_at_a_time() -> None:
    texts = ["Éjjel-nappal  rá!", "İstanbul", "two\nlines", "", "私は。", "Você?"]
    assert normalize_answers(texts) == [normalize_answer(t) for t in texts]
    assert strip_accents_all(texts) == [strip_accents(t) for t in texts]
    assert normalize_answers([]) == []


def test_long_lists_are_cleaned_as_one_text_at_a_time() -> None:
    texts = [
        "  Éjjel-nappal\u3000 rá!",
        "İstanbul",
        "",
        "私は。",
        " ?! … ",
        "Você\u2028está?",
    ] * 200
    assert normalize_answers(texts) == [normalize_answer(t) for t in texts]
    assert strip_accents_all(texts) == [strip_accents(t) for t in texts]
    decomposed = [unicodedata.normalize("NFD", t) for t in texts]
    assert strip_accents_decomposed(decomposed) == [strip_accents(t) for t in texts]
