"""The labelling summary's agreement section: a table for two or more labelers, a sentence for one."""

from __future__ import annotations

import pandas as pd

from training.label.summary import agreement, agreement_section


def test_one_labeler_gets_a_sentence_not_an_empty_table():
    df = pd.DataFrame({"a.u": [1, 0, 1]})
    section = agreement_section(agreement(df, ["a"]))
    assert section[2] == "One labeler only: there is no agreement to measure."


def test_two_labelers_get_the_table():
    df = pd.DataFrame({"a.u": [1, 0, 1, 1], "b.u": [1, 0, 0, 1]})
    section = agreement_section(agreement(df, ["a", "b"]))
    assert "| a / b | 4 | 75.0 |" in section[2]
