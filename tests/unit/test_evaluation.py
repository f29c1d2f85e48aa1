"""DSR, PBO and costs against values derived by hand from the papers' formulas, and against
simulation (noise must look like noise, a real edge must not)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nova_trainer.evaluation.baseline import constant_note, identical_trials
from nova_trainer.evaluation.costs import net_returns, turnover
from nova_trainer.evaluation.deflated_sharpe import (
    EULER_GAMMA,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    sharpe,
)
from nova_trainer.evaluation.oos import Bars, OutOfSample, decode, encode, positions_of
from nova_trainer.evaluation.pbo import n_combinations, pbo_cscv


def test_expected_max_sharpe_by_hand():
    # N = 2, V = 1: Z^-1(1 - 1/2) = 0 and Z^-1(1 - 1/(2e)) = Z^-1(0.816060) = 0.90045 (normal
    # table: Z(0.90) = 0.81594, Z(0.91) = 0.81859, interpolated)
    assert expected_max_sharpe(2, 1.0) == pytest.approx(EULER_GAMMA * 0.90045, abs=1e-4)
    # N = 10, V = 0.04: 0.2 * (0.4228 * Z^-1(0.9) + 0.5772 * Z^-1(0.963212))
    z = (1 - 0.5772157) * 1.2815516 + 0.5772157 * 1.78928  # Z(1.78) = 0.96246, Z(1.79) = 0.96327
    assert expected_max_sharpe(10, 0.04) == pytest.approx(0.2 * z, abs=2e-4)
    assert expected_max_sharpe(1, 1.0) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0


def test_expected_max_sharpe_matches_simulated_maxima():
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000):
        simulated = rng.standard_normal((4000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.02)


def test_probabilistic_sharpe_by_hand():
    # SR 0.1, SR0 0, T 101, normal moments: denom 1 + 2/4 * 0.01 = 1.005; z = 0.1 * 10 / sqrt(1.005)
    assert probabilistic_sharpe(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(stats.norm.cdf(1 / math.sqrt(1.005)))
    assert probabilistic_sharpe(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(0.84068, abs=1e-4)
    # negative skew and fat tails widen the estimate: SR 0.1, SR0 0.05, T 251, skew -1, kurt 6
    denom = 1 + 0.1 + 5 / 4 * 0.01
    expected = stats.norm.cdf(0.05 * math.sqrt(250) / math.sqrt(denom))
    assert probabilistic_sharpe(0.1, 0.05, 251, -1.0, 6.0) == pytest.approx(expected)
    assert expected == pytest.approx(0.7734, abs=1e-3)  # z = 0.7906 / 1.0548 = 0.7496


def test_deflated_sharpe_of_a_small_series_by_hand():
    r = np.array([0.01, -0.005, 0.02, 0.0, 0.015])
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    sr0 = math.sqrt(0.01) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / 20)
                             + EULER_GAMMA * stats.norm.ppf(1 - 1 / (20 * math.e)))
    want = stats.norm.cdf((sr - sr0) * 2 / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    got = deflated_sharpe(r, n_trials=20, sharpe_variance=0.01)
    assert got.sharpe == pytest.approx(sr) and got.expected_max_sharpe == pytest.approx(sr0)
    assert got.dsr == pytest.approx(want)
    assert got.dsr < got.psr


def _noise_study(rng, n_trials=200, bars=1000):
    return rng.standard_normal((bars, n_trials)) * 0.01


def test_noise_best_trial_has_low_dsr_though_its_plain_psr_looks_significant():
    rng = np.random.default_rng(1)
    returns = _noise_study(rng)
    srs = np.array([sharpe(returns[:, i]) for i in range(returns.shape[1])])
    best = int(np.argmax(srs))
    d = deflated_sharpe(returns[:, best], returns.shape[1], float(np.var(srs, ddof=1)))
    assert d.psr > 0.95  # the naive claim: "significant"
    assert d.dsr < 0.9  # deflated: not evidence of skill
    dsrs = []
    for seed in range(20):
        m = _noise_study(np.random.default_rng(100 + seed), n_trials=100, bars=500)
        s = np.array([sharpe(m[:, i]) for i in range(m.shape[1])])
        dsrs.append(deflated_sharpe(m[:, int(np.argmax(s))], m.shape[1], float(np.var(s, ddof=1))).dsr)
    assert np.mean(np.array(dsrs) > 0.95) <= 0.15  # a 5% test, give or take the approximation
    assert 0.25 < np.mean(dsrs) < 0.75


def test_real_edge_has_high_dsr_and_low_pbo():
    rng = np.random.default_rng(2)
    returns = _noise_study(rng)
    returns[:, 17] += 0.002  # a true per-bar Sharpe of 0.2 (3.2 annualised)
    srs = np.array([sharpe(returns[:, i]) for i in range(returns.shape[1])])
    assert int(np.argmax(srs)) == 17
    d = deflated_sharpe(returns[:, 17], returns.shape[1], float(np.var(srs, ddof=1)))
    assert d.dsr > 0.95
    assert pbo_cscv(returns, 16).pbo < 0.1


def test_pbo_of_noise_is_near_or_above_one_half():
    values = [pbo_cscv(_noise_study(np.random.default_rng(10 + s), n_trials=50, bars=800), 16).pbo
              for s in range(5)]
    assert np.mean(values) > 0.35
    assert max(values) > 0.45


def test_pbo_by_hand_on_two_trials_and_two_blocks():
    # Trial A wins the first block and loses the second, B the opposite: whichever half is
    # in-sample, its winner ranks last out of sample: rank 1 of 2, w = 1/3, lambda = ln(1/2) < 0.
    a = np.array([0.02, 0.03, -0.01, -0.02])
    b = np.array([-0.01, -0.02, 0.02, 0.03])
    result = pbo_cscv(np.column_stack([a, b]), partitions=2)
    assert result.n_combinations == 2
    assert result.pbo == 1.0
    np.testing.assert_allclose(result.logits, [math.log(0.5), math.log(0.5)])
    # A dominant trial is chosen in-sample and ranks first out of sample: w = 2/3, lambda = ln 2 > 0.
    dominant = np.column_stack([[0.12, 0.14, 0.09, 0.10], b])  # Sharpe 9.2 and 13.4 vs -3.5 and 3.5
    assert pbo_cscv(dominant, partitions=2).pbo == 0.0


def test_pbo_by_hand_on_four_blocks():
    # 3 trials, S = 4 blocks of 2 bars; C(4, 2) = 6 splits. Trial 0 is best in blocks {0, 1},
    # trial 1 in {2, 3}, trial 2 is middling everywhere.
    blocks = {0: [(3, 1), (-3, -1), (5, -4.6)], 1: [(3, 1.2), (-3, -1.2), (5, -4.6)],
              2: [(-3, -1), (3, 1), (5, -4.6)], 3: [(-3, -1.2), (3, 1.2), (5, -4.6)]}
    m = np.array([[blocks[b][t][i] for t in range(3)] for b in range(4) for i in range(2)]) / 100
    result = pbo_cscv(m, partitions=4)
    assert result.n_combinations == n_combinations(4) == 6
    # Splits {0,1}/{2,3} and {2,3}/{0,1}: the winner is last out of sample (rank 1 of 3, w = 1/4).
    # Mixed splits such as {0,2}: everyone's Sharpe ~0 but trial 2's is positive with low spread:
    # trial 2 wins in and out of sample (rank 3, w = 3/4). So PBO = 2/6.
    assert result.pbo == pytest.approx(2 / 6)
    assert sorted(np.round(result.logits, 6)) == sorted(np.round(
        [math.log(1 / 3)] * 2 + [math.log(3)] * 4, 6))


def test_pbo_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="even"):
        pbo_cscv(np.zeros((100, 3)), 5)
    with pytest.raises(ValueError, match="at least 32 bars"):
        pbo_cscv(np.zeros((20, 3)), 16)
    with pytest.raises(ValueError, match="2 trials"):
        pbo_cscv(np.zeros((100, 1)), 16)


def test_costs_charge_each_unit_of_turnover_and_each_fold_opens_from_flat():
    pos = np.array([1, 1, -1, -1, 1, -1, -1], dtype="int8")
    # folds of 4 and 3 bars: |1-0|, 0, 2, 0 | |1-0|, 2, 0
    np.testing.assert_array_equal(turnover(pos, [4, 3]), [1, 0, 2, 0, 1, 2, 0])
    gross = np.full(7, 0.001)
    np.testing.assert_allclose(net_returns(gross, pos, [4, 3], cost_bps=10),
                               0.001 - np.array([1, 0, 2, 0, 1, 2, 0]) * 0.001)
    with pytest.raises(ValueError, match="do not add up"):
        turnover(pos, [4, 4])


def test_constant_model_note_and_identical_trials():
    assert "long on 98%" in constant_note(np.array([1] * 98 + [-1] * 2))
    assert constant_note(np.array([1, -1] * 50)) is None
    rows = [np.array([1, 1, -1]), np.array([1, 1, -1]), np.array([-1, 1, 1])]
    assert identical_trials(rows) == 2


def test_out_of_sample_record_round_trips_compactly():
    rng = np.random.default_rng(3)
    pos = np.where(rng.random(1250) > 0.5, 1, -1).astype("int8")
    fwd = rng.standard_normal(1250) * 0.01
    dates = np.arange("2010-01-01", 1250, dtype="datetime64[D]").astype("datetime64[ns]")
    oos = OutOfSample(pos, fwd, dates, [250] * 5)
    bars = Bars.from_attr(oos.study_attr())
    np.testing.assert_array_equal(bars.fwd_return, fwd)
    np.testing.assert_array_equal(bars.dates, dates)
    attrs = {"oos": oos.trial_attr()}
    np.testing.assert_array_equal(positions_of(attrs, bars.digest), pos)
    assert positions_of(attrs, "other-bars") is None and positions_of({}, bars.digest) is None
    assert len(attrs["oos"]["positions"]) < 400  # 1,250 bars: ~1 bit each after zlib, base64
    np.testing.assert_array_equal(decode(encode(fwd, "float64"), "float64"), fwd)
