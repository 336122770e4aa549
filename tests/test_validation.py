"""The shared input checks: one implementation each, the caller's own shapes and indices in
every message, other byte orders accepted, wide and complex floats refused by name."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import activerm_fast as arm
from activerm_fast.data import Dataset
from activerm_fast.model import RewardModel
from activerm_fast.model.metrics import best_of_n, within_prompt_spearman
from activerm_fast.simulation.oracle import BTOracle, PairLabelOracle
from activerm_fast.testing import validation as v

PACKAGE = Path(arm.__file__).parent
F = np.random.default_rng(0).normal(size=(10, 4))
P = np.array([[0, 1], [2, 3], [4, 9], [5, 7]])


def test_no_module_imports_validators_from_data():
    dataset_api = {
        "ARENA_BENCH",
        "Dataset",
        "EmbeddingOptions",
        "embed_texts",
        "from_arrays",
        "load",
        "synthetic",
    }
    dataset_modules = {"activerm_fast.data", "activerm_fast.data.dataset"}
    submodules = {path.stem for path in (PACKAGE / "data").glob("*.py")}
    for source in PACKAGE.rglob("*.py"):
        package = ["activerm_fast", *source.parent.relative_to(PACKAGE).parts]
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if module in dataset_modules and source.name != "__init__.py":
                    # a submodule (``from . import annotation_tools``) is not a name of data's
                    names = {alias.name for alias in node.names} - submodules
                    assert names <= dataset_api, f"{source.name} imports {names} from {module}"


def test_select_with_2d_features_speaks_of_the_callers_shape_and_index():
    bad = F.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"features must be finite, got nan at index \(2, 1\)$"):
        arm.select("xtx", features=bad, pairs=P, k=1)
    with pytest.raises(ValueError, match=r"features is empty: shape \(0, 8\)$"):
        arm.select("xtx", features=np.zeros((0, 8)), pairs=P, k=1)
    with pytest.raises(ValueError, match=r"features is empty: shape \(10, 0\)$"):
        arm.select("xtx", features=np.zeros((10, 0)), pairs=P, k=1)
    members = np.stack([F, bad])
    with pytest.raises(ValueError, match=r"got nan at index \(1, 2, 1\)$"):
        arm.select("xtx", features=members, pairs=P, k=1)
    rewards = np.arange(10.0)
    rewards[3] = np.inf
    with pytest.raises(ValueError, match="rewards must be finite, got inf at index 3$"):
        arm.select("entropy", features=F, pairs=P, k=1, rewards=rewards)


@pytest.mark.parametrize("order", [">", "<"])
def test_either_byte_order_gives_the_same_selection(order):
    native = arm.select("dopt-greedy", features=F, pairs=P, k=2, rewards=F[:, 0])
    swapped = arm.select(
        "dopt-greedy",
        features=F.astype(f"{order}f8"),
        pairs=P.astype(f"{order}i8"),
        k=2,
        rewards=F[:, 0].astype(f"{order}f8"),
    )
    np.testing.assert_array_equal(swapped.indices, native.indices)
    np.testing.assert_array_equal(swapped.gains, native.gains)
    single = F.astype(np.float32)
    np.testing.assert_array_equal(
        arm.pair_diff(single.astype(f"{order}f4"), P), arm.pair_diff(single, P)
    )


def test_wide_and_complex_floats_are_refused_by_name():
    with pytest.raises(TypeError, match="features must hold real numbers of at most 64 bits.*"):
        arm.select("xtx", features=F.astype(np.complex128), pairs=P, k=1)
    with pytest.raises(TypeError, match="embeddings .*got dtype complex64"):
        Dataset("d", F.astype(np.complex64), np.arange(10) // 2)
    with pytest.raises(TypeError, match="gold .*got dtype complex128"):
        BTOracle(F[:, 0].astype(np.complex128))
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    wide = F.astype(np.longdouble)
    with pytest.raises(TypeError, match=f"features .*got dtype {wide.dtype}"):
        arm.select("xtx", features=wide, pairs=P, k=1)
    with pytest.raises(TypeError, match=f"embeddings .*got dtype {wide.dtype}"):
        RewardModel(4).rewards(wide)


def test_float16_embeddings_are_used_as_float32():
    half = F.astype(np.float16)
    dataset = Dataset("d", half, np.arange(10) // 2)
    assert dataset.embeddings.dtype == np.float32
    np.testing.assert_array_equal(dataset.embeddings, half.astype(np.float32))
    model = RewardModel(4, hidden=(8,))
    np.testing.assert_array_equal(model.rewards(half), model.rewards(half.astype(np.float32)))


def test_values_beyond_float32_are_refused_not_made_infinite():
    big = F.copy()
    big[1, 2] = 1e300
    with pytest.raises(ValueError, match=r"embeddings must fit in float32, got 1e\+300 at index"):
        Dataset("d", big, np.arange(10) // 2)


SELF_PAIR = np.array([[0, 1], [3, 3]])
SELF_PAIR_CALLS = {
    "pairs_tensor": lambda: v.pairs_tensor(SELF_PAIR, 10, torch.device("cpu"), distinct=True),
    "labelled_pairs": lambda: v.labelled_pairs(SELF_PAIR, [1, 0], 10),
    "Dataset": lambda: Dataset("d", F, np.arange(10) // 2, pairs=SELF_PAIR, labels=[1, 0]),
    "BTOracle.label": lambda: BTOracle(np.arange(10.0)).label(SELF_PAIR),
    "PairLabelOracle": lambda: PairLabelOracle(SELF_PAIR, [1, 0]),
    "RewardModel.fit": lambda: RewardModel(4, hidden=(8,)).fit(F, SELF_PAIR, [1, 0]),
    "select labelled": lambda: arm.select("xtx", features=F, pairs=P, k=1, labelled=SELF_PAIR),
}


@pytest.mark.parametrize("call", sorted(SELF_PAIR_CALLS))
def test_one_self_pair_message_everywhere(call):
    name = "labelled" if call == "select labelled" else "pairs"
    with pytest.raises(
        ValueError, match=rf"^{name}\[1\] = \(3, 3\) compares a response with itself$"
    ):
        SELF_PAIR_CALLS[call]()


def test_finite_real_vectors_are_checked_alike():
    gold = np.arange(6.0)
    gold[4] = np.nan
    ids = np.arange(6) // 2
    for call in (
        lambda: Dataset("d", F[:6], ids, gold=gold),
        lambda: BTOracle(gold),
        lambda: within_prompt_spearman(np.arange(6.0), gold, ids),
    ):
        with pytest.raises(ValueError, match="^gold must be finite, got nan at index 4$"):
            call()
    for call in (
        lambda: Dataset("d", F[:6], ids, gold=np.ones(6, dtype=bool)),
        lambda: BTOracle(np.ones(6, dtype=bool)),
        lambda: within_prompt_spearman(np.arange(6.0), np.ones(6, dtype=bool), ids),
    ):
        with pytest.raises(TypeError, match="^gold must hold real numbers, got dtype torch.bool$"):
            call()


def test_negative_seeds_are_refused_by_name():
    calls = [
        lambda: arm.synthetic(seed=-1),
        lambda: RewardModel(4, seed=-1),
        lambda: RewardModel(4, hidden=(8,)).fit(F, P, [1, 0, 1, 0], seed=-2),
        lambda: best_of_n(np.arange(6.0), np.arange(6.0), np.arange(6) // 3, repeats=2, seed=-1),
        lambda: Dataset("d", F, np.arange(10) // 2).with_split(0.5, seed=-1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^seed must be non-negative, got -\d$"):
            call()


def test_labelled_mask_and_available_count():
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3]])
    labelled = torch.tensor([[2, 1], [3, 0]])
    assert v.labelled_mask(pairs, labelled, 4).tolist() == [False, True, False, True]
    assert v.available_count(pairs, labelled, 4) == 2
    assert v.available_count(pairs, None, 4) == 4
    assert v.available_count(pairs, labelled[:0], 4) == 4


def test_labels_of_any_array_kind():
    expected = np.array([1, 0, 1])
    for labels in (
        [1, 0, 1],
        [True, False, True],
        np.array([1.0, 0.0, 1.0]),
        torch.tensor([1, 0, 1]),
    ):
        np.testing.assert_array_equal(v.binary_labels(labels, 3), expected)
    with pytest.raises(TypeError, match="labels must hold numbers, got dtype object"):
        v.binary_labels([1, None, 0], 3)


def test_embeddings_below_float32s_normal_range_are_refused_not_zeroed():
    tiny = F.astype(np.float64) * 1e-300
    with pytest.raises(ValueError, match=r"embeddings must fit in float32, got values no larger"):
        Dataset("d", tiny, np.arange(10) // 2)
    # a few tiny entries beside normal ones lose nothing that matters: accepted
    mixed = F.astype(np.float64)
    mixed[0, 0] = 1e-300
    assert Dataset("d", mixed, np.arange(10) // 2).embeddings[0, 0] == 0.0


def test_seeds_beyond_64_bits_name_the_seed():
    import activerm_fast as arm

    for make in (
        lambda seed: RewardModel(4, hidden=(8,), seed=seed),
        lambda seed: arm.select("random", features=F, pairs=[[0, 1], [2, 3]], k=1, seed=seed),
    ):
        with pytest.raises(
            ValueError, match=r"^seed must be below 2\*\*64, got 1180591620717411303424$"
        ):
            make(2**70)
        make(2**64 - 1)  # the largest seed both generators take


HUGE = 10**400  # an int no float64 holds


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda F, P: arm.select("xtx", features=F, pairs=P, k=2, ridge=HUGE), "ridge"),
        (lambda F, P: arm.greedy_logdet(F, P, 2, prior=HUGE), "prior"),
        (lambda F, P: arm.LoopConfig(beta=HUGE), "beta"),
        (lambda F, P: arm.LoopConfig(ridge=HUGE), "ridge"),
        (lambda F, P: BTOracle(np.arange(8.0), beta=HUGE), "beta"),
        (lambda F, P: RewardModel(4, hidden=(3,)).fit(F, P, np.ones(len(P)), lr=HUGE), "lr"),
        (
            lambda F, P: RewardModel(4, hidden=(3,)).fit(F, P, np.ones(len(P)), weight_decay=HUGE),
            "weight_decay",
        ),
    ],
)
def test_integers_beyond_float64_name_the_argument(call, name):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 4)).astype(np.float32)
    pairs = np.array([[i, j] for i in range(8) for j in range(i + 1, 8)])
    with pytest.raises(ValueError, match=rf"^{name} must be within float64's range .* 401 digits"):
        call(features, pairs)


def test_lazy_of_an_array_and_rewards_of_three_axes_are_named():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 4)).astype(np.float32)
    pairs = np.array([[i, j] for i in range(8) for j in range(i + 1, 8)])
    with pytest.raises(
        ValueError, match=r'lazy must be True, False or "auto", got array\(\[1, 2\]\)'
    ):
        arm.select("xtx", features=features, pairs=pairs, k=2, lazy=np.array([1, 2]))
    with pytest.raises(
        ValueError, match=r"rewards must have shape \(n,\) or \(E, n\), got \(1, 1, 8\)"
    ):
        arm.fisher_weights(np.zeros((1, 1, 8)), pairs)
