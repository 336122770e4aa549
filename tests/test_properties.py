"""Property-based tests (hypothesis) over every public kernel and every selection strategy.

Small random problems (n <= 30 responses, d <= 8 features) with float32/float64 features across
many orders of magnitude, rank-deficient and integer-grid features (exact ties), candidate pools
in random orientation and index dtype, optional weights, priors, exclusions and labelled pairs.
The properties:

* every kernel and every strategy either returns or raises ValueError/TypeError, never another
  exception; a ValueError on well-formed input (a value the engine cannot represent) names the
  input to change (features, prior or weights), and is only raised far from the prior's scale;
* every batch has k distinct in-range positions, never a self, excluded or labelled pair;
* greedy gains are non-increasing, and the reported log det equals a 50-digit mpmath reference
  built from the exact float inputs;
* pair_diff, fisher_weights, pair_quadform and fisher_matrix agree with ``_reference`` to a
  tolerance derived from the input dtype;
* malformed arguments of every kind are refused with ValueError/TypeError.

With the environment variable CI set the examples are derandomized, so CI runs are reproducible.
A failure prints the shrunk example and a ``@reproduce_failure`` blob that replays it.

Failures these properties found in the package (fixed since) stay as minimal regression tests
at the end of this file.
"""

from __future__ import annotations

import math
import os

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import activerm_fast as arm
from activerm_fast.testing import reference as ref

settings.register_profile(
    "activerm-properties",
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,  # no .hypothesis/ example database in the working tree
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("activerm-properties")

GREEDY_STRATEGIES = ("xtx", "dopt-greedy", "past-dopt-greedy", "ensemble-dopt-greedy")
SINGLE_MODEL_GREEDY = ("xtx", "dopt-greedy", "past-dopt-greedy")
RANKING_STRATEGIES = ("entropy", "max-gap", "bald", "dopt-topk", "past-dopt-topk")
PAST_AWARE = ("past-dopt-greedy", "ensemble-dopt-greedy", "past-dopt-topk")
# the D-optimal strategies that weigh pairs by their Fisher weights from the rewards
WEIGHTED_DOPT = ("dopt-topk", "past-dopt-topk", "dopt-greedy", "past-dopt-greedy",
                 "ensemble-dopt-greedy")  # fmt: skip
# a ValueError about a value that cannot be represented must name one of these
BLAME = ("features", "prior", "weights", "rewards")
# an exact Fisher weight below this may round to 0 in float64 (the smallest subnormal is 5e-324)
WEIGHT_UNDERFLOW = 1e-300
MP_DIGITS = 50
EPS64 = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).tiny)  # smallest normal float64

# How far the information of the pairs (sum of w |d|^2, plus the prior's largest eigenvalue) may
# exceed the prior's smallest eigenvalue for float64 to promise anything about a design matrix:
# beyond about 1/epsilon (4.5e15) a matrix F0 + sum w d d^T formed explicitly loses the prior to
# rounding (Cholesky may fail, a solve may call it singular) and running scores cancel. Below this
# ratio the properties hold in full; above it only the refusal properties are checked.
RATIO_LIMIT = 1e12

# powers of ten the features are scaled by, per dtype ...
SCALES = {"float32": (-6, 6), "float64": (-30, 30)}
# ... and beyond what float64 can square, for the clean-refusal property
EXTREME_SCALES = {"float32": (-45, 38), "float64": (-300, 300)}
UNIT = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


# ---- generators ---------------------------------------------------------------------------------


@st.composite
def feature_arrays(draw, n: int, d: int, dtype, members: int = 1, scales=None):
    """(members, n, d) features: dense, rank-deficient (A @ B with inner dimension < d) or on an
    integer grid (exact ties), times a power of ten."""
    structure = draw(st.sampled_from(["dense", "low-rank", "grid"]))
    shape = (members, n, d)
    if structure == "low-rank" and d >= 2:
        inner = draw(st.integers(1, d - 1))
        a = draw(hnp.arrays(np.float64, (members, n, inner), elements=UNIT))
        b = draw(hnp.arrays(np.float64, (members, inner, d), elements=UNIT))
        base = a @ b
    elif structure == "dense":
        base = draw(hnp.arrays(np.float64, shape, elements=UNIT))
    else:
        base = draw(hnp.arrays(np.int8, shape, elements=st.integers(-3, 3))).astype(np.float64)
    exponent = draw(st.integers(*(scales or SCALES)[np.dtype(dtype).name]))
    with np.errstate(over="ignore", under="ignore"):
        features = (base * 10.0**exponent).astype(dtype)
    assume(np.isfinite(features).all())
    return features


def triu_pairs(n: int) -> np.ndarray:
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1).astype(np.int64)


@st.composite
def pair_arrays(draw, n: int, max_size: int = 40, min_size: int = 0):
    """Distinct unordered pairs of n responses, each in random orientation, int32 or int64."""
    every = triu_pairs(n)
    size = {"min_size": min(min_size, len(every)), "max_size": min(max_size, len(every))}
    positions = draw(st.lists(st.integers(0, len(every) - 1), unique=True, **size))
    flips = draw(st.lists(st.booleans(), min_size=len(positions), max_size=len(positions)))
    pairs = every[positions].reshape(-1, 2)
    pairs[flips] = pairs[flips][:, ::-1]
    return pairs.astype(draw(st.sampled_from([np.int32, np.int64])))


@st.composite
def weight_arrays(draw, count: int):
    """None or (count,) weights in [0, 1/4] (exact zeros included), float32 or float64."""
    if draw(st.booleans()):
        return None
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return draw(hnp.arrays(dtype, (count,), elements=st.floats(0.0, 0.25, width=32)))


# ridge lambda = m * 10^e, 1e-6 <= lambda < 1e4
RIDGES = st.builds(lambda m, e: float(m * 10.0**e), st.floats(1.0, 9.99), st.integers(-6, 3))


@st.composite
def ridges_for(draw, features: np.ndarray, absolute=RIDGES):
    """An absolute ridge, or one relative to the features' scale (max |phi|^2 10^-14 .. 10^2),
    so that the information/prior ratios between 1 and 1e16 are visited as often as the ends."""
    top = float(np.abs(features).max(initial=0.0))
    if draw(st.booleans()):
        with np.errstate(over="ignore", under="ignore"):
            ridge = top * top * 10.0 ** draw(st.integers(-14, 2))
        if 0.0 < ridge < np.inf:
            return ridge
    return draw(absolute)


@st.composite
def labelled_arrays(draw, n: int, pairs: np.ndarray):
    """None, or labelled pairs: some candidates (either orientation) plus a few other pairs,
    possibly repeated; int32 or int64."""
    if draw(st.booleans()):
        return None
    rows = []
    if len(pairs):
        taken = draw(st.lists(st.integers(0, len(pairs) - 1), unique=True, max_size=len(pairs)))
        rows += [pairs[t].astype(np.int64) for t in taken]
    every = triu_pairs(n)
    rows += [every[t] for t in draw(st.lists(st.integers(0, len(every) - 1), max_size=4))]
    flips = draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    rows = [row[::-1] if flip else row for row, flip in zip(rows, flips, strict=True)]
    labelled = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return labelled.astype(draw(st.sampled_from([np.int32, np.int64])))


def keys(pairs: np.ndarray) -> set[tuple[int, int]]:
    rows = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    return set(map(tuple, rows.tolist()))


def excluded_by(pairs: np.ndarray, labelled: np.ndarray | None) -> np.ndarray:
    done = keys(labelled) if labelled is not None else set()
    return np.array([key in done for key in map(tuple, np.sort(pairs, axis=1).tolist())], bool)


def information_ratio(members, rows: np.ndarray, weight: float, top: float, floor: float) -> float:
    """(largest prior eigenvalue ``top`` + weight * sum_k |d_k|^2) / smallest prior eigenvalue
    ``floor``: a bound on how far the pairs' information can exceed the prior, so on the
    condition of any design matrix built from them (inf when it does not fit float64 or the
    prior is not positive definite)."""
    if floor <= 0:
        return np.inf
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for f in members:
            total = max(total, float((ref.pair_diff(f, rows) ** 2).sum()))
        ratio = (top + weight * total) / floor
    return float(ratio) if np.isfinite(ratio) else np.inf


def quadform_overflows(members, rows: np.ndarray, floor: float) -> bool:
    """Whether some d^T F0^-1 d (at most |d|^2 / lambda_min(F0)) may not fit float64: only then
    may the greedy engine refuse a problem (the brief's "well-posed" bound, (2 max|phi|)^2 d /
    lambda < 1e300, taken per pair)."""
    if floor <= 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        largest = max(
            float((ref.pair_diff(f, rows) ** 2).sum(axis=1).max(initial=0.0)) for f in members
        )
        return not largest / floor < 1e300


def scores_underflow(members, top: float) -> bool:
    """Whether no d^T F0^-1 d could be told from 0 in float64, d (2 max|phi|)^2 / lambda_max(F0)
    below 2^-1074 (a bound of every score's bound): only there may the engine refuse features
    too small for the prior, rather than rank ties."""
    largest = max(float(np.abs(f).max(initial=0.0)) for f in members)
    if largest == 0.0 or not top > 0:
        return False
    dims = members[0].shape[-1]
    return math.log2(dims) + 2 * math.log2(2 * largest) - math.log2(top) < -1074


def attempt(call):
    """The call's result, or the exception it raised (the properties judge it)."""
    try:
        return call()
    except Exception as err:  # noqa: BLE001
        return err


def check_outcome(out, what: str, refusable: bool = False) -> bool:
    """True when the call returned. A raised exception must be a ValueError/TypeError with a
    message, and on well-formed input a ValueError naming what to change (BLAME), only where
    ``refusable`` (a value float64 cannot represent)."""
    if not isinstance(out, Exception):
        return True
    note(f"{what}: {type(out).__name__}: {out}")
    assert isinstance(out, ValueError), f"{what} raised {type(out).__name__}: {out}"
    assert str(out).strip(), f"{what}: ValueError with an empty message"
    assert any(word in str(out) for word in BLAME), f"{what}: error names none of {BLAME}: {out}"
    assert refusable, f"{what} refused a problem float64 can represent: {out}"
    return False


def assert_valid_batch(indices, k: int, count: int, excluded: np.ndarray | None) -> np.ndarray:
    indices = np.asarray(indices)
    assert indices.shape == (k,) and indices.dtype == np.int64
    assert len(set(indices.tolist())) == k, indices
    assert np.all((indices >= 0) & (indices < count)), indices
    if excluded is not None:
        assert not excluded[indices].any(), indices
    return indices


def assert_nonincreasing(gains: np.ndarray) -> None:
    assert np.all(gains[1:] <= gains[:-1] * (1 + 1e-9)), gains


# ---- the 50-digit reference ---------------------------------------------------------------------


def mp_fisher_weights(rewards: np.ndarray, rows) -> list[list]:
    """Per member e and row k: sigma(D)(1 - sigma(D)) with D = r_e,i - r_e,j, exactly."""
    out = []
    for r in np.atleast_2d(rewards):
        member = []
        for i, j in rows:
            s = 1 / (1 + mpmath.exp(mpmath.mpf(float(r[j])) - mpmath.mpf(float(r[i]))))
            member.append(s * (1 - s))
        out.append(member)
    return out


def mp_mean_fisher_weights(rewards: np.ndarray, rows) -> list:
    """Per row: the members' mean of :func:`mp_fisher_weights`, exactly."""
    per_member = mp_fisher_weights(rewards, rows)
    return [mpmath.fsum(column) / len(per_member) for column in zip(*per_member, strict=True)]


def mp_add_pairs(matrix, features: np.ndarray, rows, weights):
    """matrix + sum_k w_k d_k d_k^T, d_k = phi_i - phi_j of the float features converted exactly."""
    d = features.shape[1]
    for (i, j), w in zip(rows, weights, strict=True):
        diff = [
            mpmath.mpf(float(features[i, a])) - mpmath.mpf(float(features[j, a])) for a in range(d)
        ]
        for a in range(d):
            for b in range(d):
                matrix[a, b] += w * diff[a] * diff[b]
    return matrix


def mp_prior(prior, d: int):
    if np.ndim(prior) == 0:
        return mpmath.mpf(float(prior)) * mpmath.eye(d)
    return mpmath.matrix([[mpmath.mpf(float(x)) for x in row] for row in np.asarray(prior)])


def mp_logdet(matrix):
    """log det of an SPD mpmath matrix by Cholesky (mpmath.cholesky refuses pivots below its
    epsilon in absolute value, as tiny ridges give)."""
    size = matrix.rows
    lower = mpmath.zeros(size)
    total = mpmath.mpf(0)
    for j in range(size):
        pivot = matrix[j, j] - mpmath.fsum(lower[j, c] ** 2 for c in range(j))
        assert pivot > 0, "reference design matrix is not positive definite"
        lower[j, j] = mpmath.sqrt(pivot)
        total += mpmath.log(pivot)
        for i in range(j + 1, size):
            dot = mpmath.fsum(lower[i, c] * lower[j, c] for c in range(j))
            lower[i, j] = (matrix[i, j] - dot) / lower[j, j]
    return total


def assert_logdet_matches(got: float, want, ratio: float) -> None:
    """1e-8 relative (absolute below |logdet| = 1), widened by the float64 conditioning of the
    design, eps * ratio: F0 is factored by Cholesky, whose log det carries that much error."""
    want = float(want)
    tolerance = 1e-8 * max(abs(want), 1.0) + 4 * EPS64 * ratio
    note(f"logdet {got!r}, 50-digit reference {want!r}, tolerance {tolerance:.3g}")
    assert abs(got - want) <= tolerance, (got, want, tolerance)


# ---- kernels against the float64 reference ------------------------------------------------------


@st.composite
def kernel_problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, d = draw(st.integers(2, 30)), draw(st.integers(1, 8))
    return dtype, draw(feature_arrays(n, d, dtype))[0], draw(pair_arrays(n))


@settings(PROFILE, max_examples=60)
@given(problem=kernel_problems(), data=st.data())
def test_kernels_match_reference(problem, data):
    dtype, features, pairs = problem
    n, d = features.shape
    eps = float(np.finfo(dtype).eps)
    tiny = float(np.finfo(dtype).tiny)
    diffs = ref.pair_diff(features, pairs)
    top = float(np.abs(features).max())

    # pair_diff: an exact difference rounded once to the input dtype (or refused where every
    # difference is below the dtype's smallest normal number, as every kernel's result is)
    got = attempt(lambda: arm.pair_diff(features, pairs))
    if check_outcome(got, "pair_diff", wholly_subnormal(diffs, tiny)):
        assert got.dtype == dtype and got.shape == (len(pairs), d)
        np.testing.assert_allclose(got, diffs, rtol=eps, atol=0)

    # fisher_matrix: accumulated in float64, rounded once to the dtype (or refused where the
    # whole result is below the dtype's smallest normal number, as a silent zero would look right)
    weights = data.draw(weight_arrays(len(pairs)), label="weights")
    w = np.ones(len(pairs)) if weights is None else weights.astype(np.float64)
    want = ref.fisher_matrix(features, pairs, w)
    got = attempt(lambda: arm.fisher_matrix(features, pairs, weights))
    if check_outcome(got, "fisher_matrix", wholly_subnormal(want, tiny)):
        size = np.abs(diffs).T @ (w[:, None] * np.abs(diffs))  # sum_k w |d_a| |d_b|
        slack = 16 * (n + d) * EPS64 * float(w.sum()) * (2 * top) ** 2
        assert got.dtype == dtype and got.shape == (d, d)
        assert np.all(np.abs(got.astype(np.float64) - want) <= 2 * eps * size + slack + tiny)
        np.testing.assert_array_equal(got, got.T)

    # pair_quadform against any (d, d) matrix, SPD or not
    exponent = data.draw(st.integers(-3, 3), label="precision exponent")
    precision = data.draw(hnp.arrays(np.float64, (d, d), elements=UNIT), label="precision")
    precision = (precision * 10.0**exponent).astype(data.draw(st.sampled_from([dtype, np.float64])))
    a = precision.astype(np.float64)
    want = ref.pair_quadform(features, pairs, a)
    got = attempt(lambda: arm.pair_quadform(features, pairs, precision))
    if check_outcome(got, "pair_quadform", wholly_subnormal(want, tiny)):
        size = np.einsum("pi,ij,pj->p", np.abs(diffs), np.abs(a), np.abs(diffs))
        # G = Phi A^T is rounded per response: g_i - g_j carries |A| (|phi_i| + |phi_j|) eps
        wide = features.astype(np.float64)  # a float32 sum of two magnitudes may overflow
        spread = np.abs(wide[pairs[:, 0]]) + np.abs(wide[pairs[:, 1]])
        slack = 8 * d * EPS64 * np.einsum("pi,ij,pj->p", np.abs(diffs), np.abs(a), spread)
        assert got.dtype == dtype and got.shape == (len(pairs),)
        assert np.all(np.abs(got.astype(np.float64) - want) <= 2 * eps * size + slack + tiny)


def test_pair_diff_refuses_wholly_subnormal_differences():
    """The example a random run found: every difference below float64's smallest normal
    number, which pair_diff refuses (naming the features) as every kernel's result is."""
    features = np.array([[0.0, 0.0], [2.22507386e-313, 2.22507386e-313]])
    with pytest.raises(ValueError, match="pair_diff underflows float64.*rescale the features"):
        arm.pair_diff(features, np.array([[0, 1]], np.int32))
    assert wholly_subnormal(ref.pair_diff(features, np.array([[0, 1]])), TINY)


def wholly_subnormal(want: np.ndarray, tiny: float) -> bool:
    """Whether every entry of the exact result is below the smallest normal number ``tiny`` of
    the result's dtype and one is not zero: the kernels refuse such a result."""
    largest = float(np.abs(want).max()) if want.size else 0.0
    return 0.0 < largest < tiny


@settings(PROFILE, max_examples=40)
@given(
    n=st.integers(2, 30),
    members=st.sampled_from([None, 1, 2, 3]),
    dtype=st.sampled_from([np.float32, np.float64]),
    exponent=st.integers(-3, 3),
    data=st.data(),
)
def test_fisher_weights_match_reference(n, members, dtype, exponent, data):
    shape = (n,) if members is None else (members, n)
    rewards = data.draw(hnp.arrays(np.float64, shape, elements=UNIT), label="rewards")
    rewards = (rewards * 10.0**exponent).astype(dtype)
    pairs = data.draw(pair_arrays(n), label="pairs")
    got = attempt(lambda: arm.fisher_weights(rewards, pairs))
    assert check_outcome(got, "fisher_weights")
    want = ref.fisher_weights(rewards, pairs)
    assert got.dtype == dtype and got.shape == (len(pairs),)
    eps = float(np.finfo(dtype).eps)
    # 1/4 is the largest p(1 - p) (test_regression_fisher_weight_above_a_quarter)
    assert np.all((got >= 0) & (got <= 0.25))
    np.testing.assert_allclose(got, want, rtol=8 * eps, atol=float(np.finfo(dtype).tiny))


# ---- greedy_logdet ------------------------------------------------------------------------------


@st.composite
def greedy_problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, d = draw(st.integers(2, 30)), draw(st.integers(1, 8))
    features = draw(feature_arrays(n, d, dtype))[0]
    pairs = draw(pair_arrays(n))
    weights = draw(weight_arrays(len(pairs)))
    ridge = draw(ridges_for(features))
    if draw(st.booleans()):
        prior = ridge
    else:  # ridge I + B B^T (exactly symmetric), possibly rounded to float32
        root = draw(hnp.arrays(np.float64, (d, draw(st.integers(1, d))), elements=UNIT))
        gram = root @ root.T * 10.0 ** draw(st.integers(-3, 3))
        prior = ridge * np.eye(d) + 0.5 * (gram + gram.T)
        if draw(st.booleans()) and np.all(np.abs(prior) < np.finfo(np.float32).max):
            prior = prior.astype(np.float32)
    exclude = None
    if len(pairs) and draw(st.booleans()):
        exclude = np.array(draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs))))
    available = len(pairs) - (0 if exclude is None else int(exclude.sum()))
    return features, pairs, draw(st.integers(0, available)), weights, prior, exclude


@settings(PROFILE, max_examples=150)
@given(problem=greedy_problems())
def test_greedy_logdet_properties(problem):
    features, pairs, k, weights, prior, exclude = problem
    d = features.shape[1]
    if np.ndim(prior) == 0:
        top = floor = float(prior)
    else:  # the prior as given (after any rounding to float32)
        eigenvalues = np.linalg.eigvalsh(prior.astype(np.float64))
        top, floor = float(eigenvalues[-1]), float(eigenvalues[0])
    weight = 1.0 if weights is None else float(np.max(weights, initial=0.0))
    ratio = information_ratio([features], pairs, weight, top, floor)
    note(f"information ratio {ratio:.3g}")
    matrix = np.ndim(prior) > 0
    # a matrix prior is factored by Cholesky: it may be refused when ill-conditioned as given
    refusable = (
        quadform_overflows([features], pairs, floor)
        or scores_underflow([features], top)
        or (matrix and top / floor >= RATIO_LIMIT)
    )
    sel = attempt(
        lambda: arm.greedy_logdet(features, pairs, k, weights=weights, prior=prior, exclude=exclude)
    )
    if not check_outcome(sel, "greedy_logdet", refusable):
        return
    indices = assert_valid_batch(sel.indices, k, len(pairs), exclude)
    gains = np.asarray(sel.gains)
    assert gains.shape == (k,) and np.all(np.isfinite(gains)) and np.all(gains >= 0)
    # Beyond RATIO_LIMIT float64 cannot be held to 50 digits (test_regression_greedy_* below pin
    # exactly representable cases there); the log det is only
    # compared where float64 can represent every d^T F0^-1 d (ratio finite) AND F0 + sum w d d^T
    # is conditioned well enough for a float64 engine to be held to the 50-digit value.
    if ratio >= RATIO_LIMIT:
        return
    assert_nonincreasing(gains)
    with mpmath.workdps(MP_DIGITS):
        w = [mpmath.mpf(1 if weights is None else float(weights[t])) for t in indices]
        chosen = pairs[indices].astype(np.int64)
        want = mp_logdet(mp_add_pairs(mp_prior(prior, d), features, chosen, w))
    assert_logdet_matches(sel.logdet, want, ratio)


# ---- every strategy -----------------------------------------------------------------------------


@st.composite
def strategy_problems(draw, scales=None, ridges=RIDGES):
    name = draw(st.sampled_from(sorted(arm.STRATEGIES)))
    entry = arm.STRATEGIES[name]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, d = draw(st.integers(2, 30)), draw(st.integers(1, 8))
    ensemble = draw(st.integers(2 if entry.needs_ensemble else 1, 3))
    with_rewards = entry.needs_rewards or entry.needs_ensemble or draw(st.booleans())
    per_member = entry.uses_member_features and with_rewards and draw(st.booleans())
    features = draw(feature_arrays(n, d, dtype, ensemble if per_member else 1, scales))
    features = features if per_member else features[0]
    rewards = None
    if with_rewards:
        shape = (ensemble, n) if ensemble > 1 or draw(st.booleans()) else (n,)
        rewards = draw(hnp.arrays(np.float64, shape, elements=UNIT)) * 10.0 ** draw(
            st.integers(-3, 3)
        )
        rewards = rewards.astype(draw(st.sampled_from([np.float32, np.float64])))
    pairs = draw(pair_arrays(n))
    labelled = draw(labelled_arrays(n, pairs))
    k = draw(st.integers(0, int((~excluded_by(pairs, labelled)).sum())))
    ridge = draw(ridges_for(features, ridges))
    return name, features, pairs, k, rewards, labelled, ridge, draw(st.integers(0, 2**32))


def weights_underflow(name, pairs, rewards, labelled, k) -> bool:
    """Whether fewer than ``k`` available pairs have an exact ensemble-mean Fisher weight that
    float64 surely represents, for a strategy that weighs by them: its picks past those would
    be ties in index order, which it refuses."""
    if name not in WEIGHTED_DOPT or rewards is None:
        return False
    available = pairs[~excluded_by(pairs, labelled)].astype(np.int64)
    kept = sum(w >= WEIGHT_UNDERFLOW for w in mp_mean_fisher_weights(rewards, available))
    return kept < k


def strategy_conditions(name, features, pairs, rewards, labelled, ridge, k):
    """(information ratio, whether a refusal is acceptable).

    Greedy strategies run on the engine (refusal only where a d^T F0^-1 d overflows, or every one underflows) unless
    past-aware with labelled pairs: then F0 is formed and factored explicitly, like the pool
    Fisher matrix of the top-k rules and the batch objective of the other strategies, and may be
    refused once the information exceeds the ridge by RATIO_LIMIT. A weighted strategy may
    refuse where the Fisher weights of fewer than ``k`` pairs survive float64."""
    members = features if features.ndim == 3 else [features]
    rows = pairs if labelled is None else np.concatenate([pairs, labelled]).astype(np.int64)
    weight = 1.0 if rewards is None or name == "xtx" else 0.25
    ratio = information_ratio(members, rows, weight, ridge, ridge)
    past = name in PAST_AWARE and labelled is not None and len(labelled) > 0
    explicit = name not in GREEDY_STRATEGIES or past
    refusable = (
        quadform_overflows(members, pairs, ridge)
        or scores_underflow(members, ridge)
        or (explicit and ratio >= RATIO_LIMIT)
        or weights_underflow(name, pairs, rewards, labelled, k)
    )
    return ratio, refusable


def strategy_logdet_reference(name, features, pairs, indices, rewards, labelled, ridge):
    """The objective a greedy strategy reports, in 50 digits: log det(F0 + sum_S w d d^T), F0 =
    ridge I plus (past-aware) the labelled pairs' information, summed over the members for
    ensemble-dopt-greedy (each with its own features and weights)."""
    chosen = pairs[indices].astype(np.int64)
    done = None
    if name in PAST_AWARE and labelled is not None and len(labelled):
        done = np.asarray(labelled, dtype=np.int64)
    d = features.shape[-1]
    if name == "ensemble-dopt-greedy":
        r = np.atleast_2d(rewards)
        members = features if features.ndim == 3 else [features] * r.shape[0]
        total = mpmath.mpf(0)
        for e, f in enumerate(members):
            start = mp_prior(ridge, d)
            if done is not None:
                start = mp_add_pairs(start, f, done, mp_fisher_weights(r[e], done)[0])
            total += mp_logdet(mp_add_pairs(start, f, chosen, mp_fisher_weights(r[e], chosen)[0]))
        return total
    f = features if features.ndim == 2 else features[0]

    def mean_weights(rows):
        if rewards is None or name == "xtx":
            return [mpmath.mpf(1)] * len(rows)
        return mp_mean_fisher_weights(rewards, rows)

    start = mp_prior(ridge, d)
    if done is not None:
        start = mp_add_pairs(start, f, done, mean_weights(done))
    return mp_logdet(mp_add_pairs(start, f, chosen, mean_weights(chosen)))


def run_select(problem):
    name, features, pairs, k, rewards, labelled, ridge, seed = problem
    return attempt(
        lambda: arm.select(
            name,
            features=features,
            pairs=pairs,
            k=k,
            rewards=rewards,
            labelled=labelled,
            ridge=ridge,
            seed=seed,
        )
    )


@settings(PROFILE, max_examples=300)
@given(problem=strategy_problems())
@example(
    problem=(
        "dopt-greedy",
        np.ones((3, 1), np.float32),
        np.array([[0, 1], [0, 2], [1, 2]], np.int32),
        2,
        np.array([0.0, 1000.0, 1000.0], np.float32),
        np.zeros((0, 2), np.int32),
        1.0,
        0,
    )
).via("the weights of two of three pairs underflow: a refusal naming the rewards")
def test_every_strategy_properties(problem):
    name, features, pairs, k, rewards, labelled, ridge, _ = problem
    ratio, refusable = strategy_conditions(name, features, pairs, rewards, labelled, ridge, k)
    note(f"information ratio {ratio:.3g}")
    sel = run_select(problem)
    if not check_outcome(sel, name, refusable):
        return
    indices = assert_valid_batch(sel.indices, k, len(pairs), excluded_by(pairs, labelled))
    chosen = pairs[indices]
    assert np.all(chosen[:, 0] != chosen[:, 1])
    if labelled is not None:
        assert not keys(chosen) & keys(labelled)
    gains = np.asarray(sel.gains)
    assert gains.shape == (k,) and np.all(np.isfinite(gains)) and np.isfinite(sel.logdet)
    if ratio >= RATIO_LIMIT or name not in GREEDY_STRATEGIES:
        return
    if name in SINGLE_MODEL_GREEDY:
        assert_nonincreasing(gains)
    with mpmath.workdps(MP_DIGITS):
        want = strategy_logdet_reference(name, features, pairs, indices, rewards, labelled, ridge)
    assert_logdet_matches(sel.logdet, want, ratio)


# ---- magnitudes float64 cannot square: clean refusals only --------------------------------------


@settings(PROFILE, max_examples=50)
@given(
    problem=strategy_problems(
        scales=EXTREME_SCALES, ridges=st.integers(-300, 300).map(lambda e: 10.0**e)
    )
)
def test_extreme_magnitudes_return_or_refuse_cleanly(problem):
    name, features, pairs, k, rewards, labelled, ridge, _ = problem
    flat = features if features.ndim == 2 else features[0]
    d = flat.shape[1]
    _, refusable = strategy_conditions(name, features, pairs, rewards, labelled, ridge, k)
    sel = run_select(problem)
    if check_outcome(sel, name, refusable):  # returned: a valid batch
        assert_valid_batch(sel.indices, k, len(pairs), excluded_by(pairs, labelled))
        gains = np.asarray(sel.gains)
        assert gains.shape == (k,)
        assert np.all(np.isfinite(gains)) and np.isfinite(sel.logdet)
    out = attempt(lambda: arm.greedy_logdet(flat, pairs, k, prior=ridge))
    unrepresentable = quadform_overflows([flat], pairs, ridge) or scores_underflow([flat], ridge)
    if check_outcome(out, "greedy_logdet", unrepresentable):
        assert_valid_batch(out.indices, k, len(pairs), None)
        gains = np.asarray(out.gains)
        assert np.all(np.isfinite(gains)) and np.all(gains >= 0) and np.isfinite(out.logdet)
        assert out.logdet == pytest.approx(d * math.log(ridge) + gains.sum(), rel=1e-9, abs=1e-9)
    # kernels that only multiply and add return whatever the magnitude, or refuse (naming the
    # features) exactly where the true result is beyond the range of the features' dtype
    limit = float(np.finfo(flat.dtype).max)
    eps, tiny = float(np.finfo(flat.dtype).eps), float(np.finfo(flat.dtype).tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        diffs = ref.pair_diff(flat, pairs)
        absolute = np.abs(diffs)
        top = np.float64(np.abs(flat).max()) if flat.size else np.float64(0.0)
        # in float64: the sum of two float32 magnitudes near the limit overflows float32
        wide = flat.astype(np.float64)
        spread = np.abs(wide[pairs[:, 0]]) + np.abs(wide[pairs[:, 1]])
        # what each result may differ from the float64 reference by (test_kernels_match_reference)
        results = {
            "pair_diff": (lambda: arm.pair_diff(flat, pairs), diffs, eps * absolute + tiny),
            "fisher_matrix": (
                lambda: arm.fisher_matrix(flat, pairs),
                diffs.T @ diffs,
                2 * eps * (absolute.T @ absolute)
                + (16 * (len(flat) + d) * EPS64 * len(pairs) * (2 * top) ** 2 if len(pairs) else 0)
                + tiny,
            ),
            "pair_quadform": (
                lambda: arm.pair_quadform(flat, pairs, np.eye(d)),
                (diffs**2).sum(axis=1),
                2 * eps * (absolute**2).sum(axis=1)
                + 8 * d * EPS64 * (absolute * spread).sum(axis=1)
                + tiny,
            ),
        }
    for what, (call, want, tolerance) in results.items():
        beyond = bool(np.any(~(np.abs(want) <= limit)))
        # within a few roundings of the limit either outcome is right
        near = bool(np.any(np.abs(want[np.isfinite(want)]) > limit / 4))
        # a result wholly below the smallest normal number, but not zero, is refused too (for
        # pair_diff, which only subtracts, that happens when the features are all subnormal)
        largest = float(np.abs(want).max()) if want.size and not beyond else 0.0
        under = 0.0 < largest < tiny
        beyond = beyond or under
        near = near or tiny / 4 < largest < 4 * tiny
        out = attempt(call)
        if near and isinstance(out, ValueError) and "flows" in str(out):
            continue
        if check_outcome(out, what, beyond) and not near:
            # returned: the values themselves, never an overflow passed off as a result
            assert not beyond, f"{what} returned a result beyond the range of its dtype"
            got = np.asarray(out).astype(np.float64)
            assert got.shape == want.shape and np.all(np.isfinite(got)), what
            with np.errstate(over="ignore", invalid="ignore"):
                assert np.all(np.abs(got - want) <= tolerance), what


# ---- malformed arguments ------------------------------------------------------------------------

# one broken argument per case: (what is broken, the call's argument name, how to break it)
MALFORMED = {
    "features": [
        lambda f: np.where(np.arange(f.size).reshape(f.shape) == 0, np.nan, f),
        lambda f: np.where(np.arange(f.size).reshape(f.shape) == f.size - 1, -np.inf, f),
        # float16 features are accepted (tests/test_half_features.py); an infinite one is not
        lambda f: np.where(np.arange(f.size).reshape(f.shape) == 0, np.inf, f).astype(np.float16),
        lambda f: f.astype(np.int64),
        lambda f: f.astype(np.complex128),
        lambda f: f.astype(np.longdouble) if np.finfo(np.longdouble).bits > 64 else f.astype(bool),
        lambda f: f.reshape(-1),
        lambda f: f[None, None],
        lambda f: f[:0],
        lambda f: "features",
        lambda f: None,
    ],
    "pairs": [
        lambda p, n: np.concatenate([p, [[0, n]]]).astype(p.dtype),
        lambda p, n: np.concatenate([p, [[-1, 0]]]).astype(p.dtype),
        lambda p, n: np.concatenate([p, [[1, 1]]]).astype(p.dtype),
        lambda p, n: np.concatenate([p, [[0, 1], [1, 0]]]).astype(p.dtype),
        lambda p, n: p.astype(np.float64),
        lambda p, n: p.astype(np.uint8),
        lambda p, n: p.astype(bool),
        lambda p, n: p.reshape(-1),
        lambda p, n: np.concatenate([p, p[:, :1]], axis=1),
        lambda p, n: [[0, "a"]],
    ],
    "k": [-1, 1.5, True, None, "2", 10**6],
    "ridge": [0.0, -1.0, np.nan, np.inf, "1", True, None, [1.0]],
    "rewards": [
        lambda r: r[..., :-1],
        lambda r: np.where(np.arange(r.size).reshape(r.shape) == 0, np.nan, r),
        lambda r: r.astype(np.int64),
        lambda r: r[None, None],
        lambda r: np.zeros((0, r.shape[-1]), dtype=r.dtype),
    ],
    "labelled": [
        lambda p, n: np.array([[2, 2]], dtype=p.dtype),
        lambda p, n: np.array([[0, n]], dtype=p.dtype),
        lambda p, n: np.zeros((1, 3), dtype=p.dtype),
        lambda p, n: np.array([[0.0, 1.0]]),
    ],
    "strategy": ["best", None, 3, "XTX"],
    "seed": [-1, 1.5, "0", None],
}


@st.composite
def malformed_problems(draw):
    """A valid ``select`` problem with one argument broken, and the broken argument's name."""
    name, features, pairs, k, rewards, labelled, ridge, seed = draw(strategy_problems())
    kwargs = dict(
        features=features,
        pairs=pairs,
        k=k,
        rewards=rewards,
        labelled=labelled,
        ridge=ridge,
        seed=seed,
    )
    n = features.shape[-2]
    broken = draw(st.sampled_from(sorted(MALFORMED)))
    how = draw(st.sampled_from(MALFORMED[broken]))
    if broken == "features":
        with np.errstate(all="ignore"):  # float16 overflows to inf: refused either way
            kwargs["features"] = how(features)
    elif broken in ("pairs", "labelled"):
        base = pairs if broken == "pairs" or labelled is None else labelled
        kwargs[broken] = how(base.reshape(-1, 2), n)
    elif broken == "rewards":
        base = rewards if rewards is not None else np.zeros(n)
        kwargs["rewards"] = how(base)
    elif broken == "strategy":
        name = how
    else:
        kwargs[broken] = how
    return name, kwargs, broken


@settings(PROFILE, max_examples=80)
@given(problem=malformed_problems(), data=st.data())
def test_malformed_arguments_are_refused(problem, data):
    name, kwargs, broken = problem
    note(f"broken argument: {broken}")
    out = attempt(lambda: arm.select(name, **kwargs))
    assert isinstance(out, (ValueError, TypeError)), f"select returned or raised {out!r}"
    assert str(out).strip()
    # the same broken argument through the kernels that take it
    features, pairs = kwargs["features"], kwargs["pairs"]
    calls = {
        "pair_diff": lambda: arm.pair_diff(features, pairs),
        "fisher_matrix": lambda: arm.fisher_matrix(features, pairs),
        "greedy_logdet": lambda: arm.greedy_logdet(
            features, pairs, kwargs["k"], prior=kwargs["ridge"]
        ),
    }
    if broken == "rewards":
        calls = {"fisher_weights": lambda: arm.fisher_weights(kwargs["rewards"], pairs)}
    elif broken in ("k", "ridge"):  # only greedy_logdet takes them
        calls = {"greedy_logdet": calls["greedy_logdet"]}
    elif broken not in ("features", "pairs"):
        return
    for what, call in calls.items():
        out = attempt(call)
        if not isinstance(out, Exception) and kernel_may_accept(what, broken, kwargs):
            continue
        # every kernel that takes the broken argument refuses it
        assert isinstance(out, (ValueError, TypeError)), f"{what} returned or raised {out!r}"
        assert str(out).strip(), what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_refuses_every_malformed_argument_it_takes(dtype):
    # every entry of MALFORMED on one fixed problem, deterministically (the property above
    # draws only some of them per run)
    rng = np.random.default_rng(7)
    n = 8
    features = rng.normal(size=(n, 3)).astype(dtype)
    pairs = np.array([[0, 1], [2, 3], [4, 5], [1, 6]], dtype=np.int32)
    for broken in ("features", "pairs", "k", "ridge", "rewards"):
        for how in MALFORMED[broken]:
            kwargs = dict(features=features, pairs=pairs, k=2, rewards=rng.normal(size=n))
            kwargs["ridge"] = 1e-3
            if broken == "features":
                with np.errstate(all="ignore"):
                    kwargs["features"] = how(features)
            elif broken == "pairs":
                kwargs["pairs"] = how(pairs, n)
            elif broken == "rewards":
                kwargs["rewards"] = how(kwargs["rewards"])
            else:
                kwargs[broken] = how
            f, p = kwargs["features"], kwargs["pairs"]
            calls = {
                "pair_diff": lambda f=f, p=p: arm.pair_diff(f, p),
                "fisher_matrix": lambda f=f, p=p: arm.fisher_matrix(f, p),
                "greedy_logdet": lambda f=f, p=p, kw=kwargs: arm.greedy_logdet(
                    f, p, kw["k"], prior=kw["ridge"]
                ),
            }
            if broken == "rewards":
                calls = {
                    "fisher_weights": lambda kw=kwargs, p=p: arm.fisher_weights(kw["rewards"], p)
                }
            elif broken in ("k", "ridge"):
                calls = {"greedy_logdet": calls["greedy_logdet"]}
            for what, call in calls.items():
                out = attempt(call)
                if not isinstance(out, Exception) and kernel_may_accept(what, broken, kwargs):
                    continue
                assert isinstance(out, (ValueError, TypeError)), (what, broken, how, out)
                assert str(out).strip(), (what, broken)


def kernel_may_accept(what, broken, kwargs) -> bool:
    """Whether a kernel's own contract admits the broken argument of a ``select`` problem:
    pair_diff and fisher_matrix take any in-range pairs (a self pair is a zero difference, a
    repeated one counts twice: only selection needs distinct, unique pairs), and fisher_weights
    takes rewards shorter than the features as long as the pairs stay within them."""
    pairs = kwargs["pairs"]
    if what in ("pair_diff", "fisher_matrix") and broken == "pairs":
        p = np.asarray(pairs)
        n = np.asarray(kwargs["features"]).shape[-2]
        in_range = p.ndim == 2 and p.shape[1] == 2 and p.dtype.kind == "i"
        return bool(in_range and p.size and p.min() >= 0 and p.max() < n)
    if what == "fisher_weights":
        rewards = kwargs["rewards"]
        well_formed = rewards.dtype.kind == "f" and rewards.ndim in (1, 2) and rewards.size
        return bool(
            well_formed
            and np.isfinite(rewards).all()
            and np.max(pairs, initial=-1) < rewards.shape[-1]
        )
    return False


@st.composite
def malformed_kernel_arguments(draw):
    """greedy_logdet / fisher_matrix / pair_quadform with a broken weights, prior, exclude or
    precision argument."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, d = draw(st.integers(2, 12)), draw(st.integers(1, 5))
    features = draw(feature_arrays(n, d, dtype))[0]
    pairs = draw(pair_arrays(n, min_size=1))
    count = len(pairs)
    asymmetric = np.eye(d) + np.triu(np.ones((d, d)), 1)
    cases = [
        ("weights", -np.ones(count)),
        ("weights", np.full(count, np.nan)),
        ("weights", np.ones(count + 1)),
        ("weights", np.ones(count, dtype=np.int64)),
        ("weights", np.ones((count, 1))),
        ("prior", 0.0),
        ("prior", -1e-3),
        ("prior", np.nan),
        ("prior", asymmetric if d > 1 else -np.eye(1)),
        ("prior", -np.eye(d)),
        ("prior", np.zeros((d, d))),
        ("prior", np.eye(d + 1)),
        ("prior", np.eye(d).astype(np.int64)),
        ("prior", np.full((d, d), np.inf)),
        ("exclude", np.zeros(count, dtype=np.int64)),
        ("exclude", np.zeros(count + 1, dtype=bool)),
        ("precision", np.eye(d + 1)),
        ("precision", np.full((d, d), np.nan)),
        ("precision", np.eye(d, dtype=np.int64)),
        ("precision", "eye"),
    ]
    return features, pairs, draw(st.sampled_from(cases))


@settings(PROFILE, max_examples=40)
@given(problem=malformed_kernel_arguments())
def test_malformed_kernel_arguments_are_refused(problem):
    features, pairs, (broken, value) = problem
    note(f"broken {broken}: {value!r}")
    if broken == "precision":
        out = attempt(lambda: arm.pair_quadform(features, pairs, value))
    else:
        kwargs = {broken: value}
        k = 1 if len(pairs) else 0
        out = attempt(lambda: arm.greedy_logdet(features, pairs, k, **kwargs))
        if broken == "weights" and not np.all(value < 0):  # fisher_matrix takes any real weights
            other = attempt(lambda: arm.fisher_matrix(features, pairs, value))
            assert isinstance(other, (ValueError, TypeError)), f"fisher_matrix: {other!r}"
    assert isinstance(out, (ValueError, TypeError)), f"returned or raised {out!r}"
    assert str(out).strip()


# ---- failures the properties above found, minimal, fixed -----------------------------------


def test_regression_greedy_takes_a_zero_gain_before_a_positive_one():
    # d = 1: differences -1e8, 0, -1e8. After pair 0, pair 2 still gains log(1 + 1e16 / (1 +
    # 1e16)) = log 2 and pair 1 gains 0; the float64 brute force takes them in that order.
    features = np.array([[0.0], [1e8], [1e8]])
    pairs = np.array([[0, 1], [1, 2], [0, 2]])
    sel = arm.greedy_logdet(features, pairs, 3, prior=1.0)
    want_indices, want_gains, _ = ref.greedy_logdet(features, pairs, 3, prior=1.0)
    assert sel.indices.tolist() == want_indices.tolist() == [0, 2, 1], sel.indices
    np.testing.assert_allclose(sel.gains, want_gains, rtol=1e-8)
    assert_nonincreasing(np.asarray(sel.gains))


def test_regression_greedy_loses_a_gain_far_beyond_the_prior():
    features = np.array([[0.0], [1e17], [1e17]])
    pairs = np.array([[0, 1], [0, 2]])
    sel = arm.greedy_logdet(features, pairs, 2, prior=4.0)
    # F = 4 + 2e34 exactly: every quantity is representable and d = 1 is perfectly conditioned
    with mpmath.workdps(MP_DIGITS):
        want = float(mpmath.log(4 + 2 * mpmath.mpf(10) ** 34))
    assert sel.logdet == pytest.approx(want, rel=1e-8), (sel.gains, sel.logdet, want)


def test_regression_batch_objective_cholesky_linalg_error():
    features = np.array([[0.0], [1e9], [1e9]])
    pairs = np.array([[0, 1], [0, 2]])
    out = attempt(lambda: arm.select("random", features=features, pairs=pairs, k=2, ridge=1.0))
    if isinstance(out, Exception):
        raise out
    assert np.isfinite(out.logdet)


def test_regression_batch_objective_solve_linalg_error():
    features = np.array([[0.0, 0.0], [4.21875e11, 4.21875e11]])
    out = attempt(
        lambda: arm.select(
            "random",
            features=features,
            pairs=np.zeros((0, 2), dtype=np.int64),
            k=0,
            labelled=np.array([[0, 1]]),
        )
    )
    if isinstance(out, Exception):
        raise out
    assert np.isfinite(out.logdet)


def test_regression_pool_fisher_refusal_names_no_input():
    features = np.array([[0.0, 0.0], [1e9, 1e9]])
    out = attempt(
        lambda: arm.select(
            "dopt-topk",
            features=features,
            pairs=np.array([[0, 1]]),
            k=0,
            rewards=np.zeros(2),
            ridge=1.0,
        )
    )
    # the pool's Fisher matrix plus the ridge is factored by its eigenvalues, held at the ridge
    assert not isinstance(out, Exception), out
    assert out.indices.shape == (0,) and np.isfinite(out.logdet)


def test_regression_greedy_ridge_scaling_overflow():
    big = 1e154
    features = np.array([[big], [np.nextafter(big, np.inf)]])
    pairs = np.array([[0, 1]])
    q = float((features[1, 0] - features[0, 0]) ** 2)  # exact: 2^918
    sel = arm.greedy_logdet(features, pairs, 1, prior=1.0)
    assert sel.gains[0] == pytest.approx(math.log1p(q), rel=1e-12)


def test_regression_greedy_matrix_scaling_overflow():
    features = np.array([[0.0, 0.0], [1e-155, 0.0]])
    sel = arm.greedy_logdet(features, np.array([[0, 1]]), 1, prior=np.eye(2))
    assert sel.gains[0] == pytest.approx(1e-310, rel=1e-6)


def test_regression_subnormal_features_overflow_error():
    features = np.array([[0.0], [1e-310]])
    sel = arm.greedy_logdet(features, np.array([[0, 1]]), 1, prior=1.0)
    assert sel.indices.tolist() == [0] and sel.gains[0] == 0.0  # log1p(1e-620) rounds to 0


def test_regression_fisher_weight_above_a_quarter():
    weight = arm.fisher_weights(np.array([0.0, 2.12301491e-15]), np.array([[0, 1]]))[0]
    assert weight <= 0.25, repr(weight)


# Found by the strengthened test_extreme_magnitudes_return_or_refuse_cleanly (issue 26).


@pytest.mark.parametrize("strategy", ["random", "bal-pm"])
def test_regression_batch_objective_beyond_float64_is_finite(strategy):
    # two pairs of one difference 1e284 against a ridge of 1e-49, Fisher weight 1/4 at equal
    # rewards: x = w q = 1e617 / 4, and the gains log1p(x) = 1419.3 and log1p(x / (1 + x)) = log 2
    # are finite although B = W^1/2 D S0 is not
    features = np.array([[0.0], [1e284], [1e284]])
    pairs = np.array([[0, 1], [0, 2]])
    out = arm.select(
        strategy, features=features, pairs=pairs, k=2, rewards=np.zeros((2, 3)), ridge=1e-49
    )
    want = [617 * math.log(10) + math.log(0.25), math.log(2)]
    np.testing.assert_allclose(out.gains, want, rtol=1e-9)
    assert out.logdet == pytest.approx(math.log(1e-49) + sum(want), rel=1e-9)


def test_regression_dopt_topk_never_takes_a_labelled_pair_beyond_float64():
    # every difference is 0, but the features rotated by the prior's inverse root overflowed
    # (inf - inf): the scores were NaN, which ranked after the labelled pair's -inf mask
    features = np.full((3, 1), 1e300)
    out = attempt(
        lambda: arm.select(
            "dopt-topk",
            features=features,
            pairs=np.array([[0, 1], [0, 2]]),
            k=1,
            rewards=np.zeros((2, 3)),
            labelled=np.array([[0, 1]]),
            ridge=1e-17,
        )
    )
    assert isinstance(out, ValueError) or out.indices.tolist() == [1], out
