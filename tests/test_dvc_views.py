"""The names DVC shows: every label of a table becomes a key a shell, a Vega field and a Markdown table carry."""

import re

from hypothesis import given, strategies as st

from rdml.report.dvc_views import key, keys_of


def test_labels_become_keys_with_greek_letters_and_signs_spelled():
    assert key("RDML α=0.5") == "RDML_alpha_0_5"
    assert key("digits/mlp/0") == "digits_mlp_0"
    assert key("Δ vs σ ≠ β") == "Delta_vs_sigma_ne_beta"
    assert key("digits: mlp, mlp | DML Net 1") == "digits_mlp_mlp_DML_Net_1"
    assert key("80% labelled") == "80_pct_labelled" and key("ResNet+VGG") == "ResNet_plus_VGG"
    assert key("§") == "_"


def test_labels_that_spell_alike_get_distinct_keys_in_order():
    assert keys_of(["α = 1", "alpha 1", "alpha-1", "α = 1"]) == {"α = 1": "alpha_1", "alpha 1": "alpha_1_2",
                                                                 "alpha-1": "alpha_1_3"}


@given(st.lists(st.text(min_size=1, max_size=12), max_size=8))
def test_every_key_is_plain_and_distinct(labels):
    keys = keys_of(labels)
    assert set(keys) == set(labels) and len(set(keys.values())) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", k) for k in keys.values())
