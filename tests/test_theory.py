"""The paper's theory, numerically; each test would fail if its claim were false."""

import numpy as np
import pytest

from ropescope import theory as syn


def test_f2_all_ones_decays_and_gaussian_is_zero_mean_noise():
    curves = syn.decay_curves(max_distance=5000)
    ones, gauss = curves["ones"], curves["gaussian"]
    assert ones[0] == pytest.approx(1.0)
    assert np.abs(ones[1000:]).max() < 0.3 * ones[0]  # decays, oscillating
    assert np.abs(ones[2500:]).mean() < np.abs(ones[:250]).mean() / 3
    assert abs(gauss.mean()) < 4 * gauss.std() / np.sqrt(len(gauss))  # zero mean
    early, late = np.abs(gauss[:2500]).mean(), np.abs(gauss[2500:]).mean()
    assert 0.8 < late / early < 1.25  # no decay


@pytest.mark.parametrize("length", [10_000, 20_000, 50_000])
def test_f8_random_rope_positions_are_sorted_and_within_range(length):
    curves = syn.random_rope_curves(length, n_tokens=500)
    assert np.all(np.diff(curves["distance"]) > 0) and curves["distance"][-1] < length
    assert curves["ones"][0] == pytest.approx(1.0)


@pytest.mark.parametrize("theta", [10_000.0, 500_000.0])
def test_f9_fixed_gaussian_pair_shows_no_clear_decay(theta):
    score = syn.fixed_gaussian_curve(theta)["score"]
    assert np.abs(score[4000:]).max() > 0.2 * np.abs(score[:100]).max()


@pytest.mark.parametrize("distance", [0, 1, 7, 300, 2999])
def test_p31_a_key_peaks_at_any_chosen_distance(distance):
    q = np.random.default_rng(distance).standard_normal(128)
    k = syn.peak_key(q, distance)
    r = np.arange(3000)
    score = syn.rotated_score(q, k, r)
    assert int(np.argmax(score)) == distance
    assert score[distance] == pytest.approx(q @ q)


def test_p32_gaussian_scores_have_zero_expectation():
    means, errors = syn.gaussian_mean_scores([0, 1, 10, 1000])
    assert np.all(np.abs(means) < 4 * errors)
    # the estimator can detect a non-zero mean: a correlated pair has one at r = 0
    q = np.random.default_rng(0).standard_normal((5000, 64))
    assert syn.rotated_score(q, q, np.zeros(5000)).mean() > 50


def test_p52_nope_cannot_prefer_itself_over_an_identical_previous_token():
    attention = syn.nope_bos_x_x()
    np.testing.assert_allclose(attention[:, 0], attention[:, 1])
    assert np.all(attention[:, 0] <= 0.5 + 1e-12)


@pytest.mark.parametrize("shift", [0, 1])
def test_t53_constructed_heads_sharpen_with_norm_and_prefer_the_fastest_chunk(shift):
    sharp = [syn.head_sharpness(syn.constructed_head(n, shift), shift) for n in (1, 2, 4, 8)]
    assert np.all(np.diff(sharp) > 0) and sharp[-1] > 0.999
    fast = syn.head_sharpness(syn.constructed_head(8.0, shift, chunks=range(8)), shift)
    slow = syn.head_sharpness(syn.constructed_head(8.0, shift, chunks=range(24, 32)), shift)
    assert fast > 0.99 and slow < 0.05  # the same norm in the slowest chunks cannot tell neighbours apart


@pytest.mark.parametrize("frequency", [1.0, 0.01, 1e-4])
def test_t61_one_frequency_semantic_match_breaks_at_the_predicted_distance(frequency):
    alignment = 0.9
    r_break = syn.semantic_break_distance(frequency, alignment)
    scores = syn.semantic_match_scores(frequency, alignment, r_break + 5)
    match, distractor = scores["match"], scores["distractor_best"]
    assert np.all(match[:r_break] >= distractor[:r_break])
    assert match[r_break] < distractor[r_break]
    assert (r_break > 4000) == (frequency < 1e-3)  # slow chunks stay robust far longer
