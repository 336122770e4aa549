"""RewardModel: shapes, the features/theta contract, learning, determinism, persistence, errors."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
import torch

from activerm_fast.data import Dataset, synthetic
from activerm_fast.model import RewardModel
from activerm_fast.model.metrics import within_prompt_spearman
from activerm_fast.model.reward_model import _distinct_rows
from activerm_fast.simulation.oracle import BTOracle

FIT = {"epochs": 12, "batch_size": 128, "lr": 3e-3}


def within_prompt_pairs(dataset: Dataset) -> np.ndarray:
    """Every pair of responses that share a prompt."""
    ids = dataset.prompt_ids
    i, j = np.triu_indices(dataset.n, k=1)
    same = ids[i] == ids[j]
    return np.stack([i[same], j[same]], axis=1)


@pytest.fixture(scope="module")
def linear_task():
    dataset = synthetic(
        num_train_prompts=60,
        responses_per_prompt=10,
        num_test_prompts=15,
        test_responses_per_prompt=20,
        dim=16,
        linear=True,
        seed=1,
    )
    train = dataset.train()
    pairs = within_prompt_pairs(train)
    labels = BTOracle(train.gold, beta=np.inf).label(pairs)
    return train, dataset.test(), pairs, labels


@pytest.fixture(scope="module")
def fitted(linear_task):
    train, _, pairs, labels = linear_task
    model = RewardModel(train.dim, hidden=(32, 32), ensemble=3, seed=0)
    return model.fit(train.embeddings, pairs, labels, **FIT)


def test_noiseless_linear_gold_is_learned(fitted, linear_task):
    _, test, _, _ = linear_task
    rewards = fitted.rewards(test.embeddings)
    for member in rewards:
        assert within_prompt_spearman(member, test.gold, test.prompt_ids) > 0.95


def test_features_times_theta_is_rewards(fitted, linear_task):
    _, test, _, _ = linear_task
    features, theta = fitted.features(test.embeddings), fitted.theta
    rewards = fitted.rewards(test.embeddings)
    assert features.shape == (3, test.n, 32) and features.dtype == np.float32
    assert theta.shape == (3, 32) and rewards.shape == (3, test.n)
    assert rewards.dtype == np.float32
    exact = np.einsum("end,ed->en", features.astype(np.float64), theta.astype(np.float64))
    np.testing.assert_allclose(rewards, exact, rtol=1e-6, atol=1e-6 * np.abs(exact).max())
    for e in range(3):
        np.testing.assert_allclose(features[e] @ theta[e], rewards[e], rtol=1e-4, atol=1e-4)


def test_ensemble_members_differ(fitted, linear_task):
    _, test, _, _ = linear_task
    rewards = fitted.rewards(test.embeddings)
    spread = rewards.std(axis=0).mean() / rewards.std()
    assert spread > 1e-3
    assert not np.allclose(fitted.theta[0], fitted.theta[1])


def test_fit_is_deterministic_for_a_seed(linear_task):
    train, test, pairs, labels = linear_task
    pairs, labels = pairs[:600], labels[:600]

    def fit(seed: int) -> np.ndarray:
        model = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=seed)
        model.fit(train.embeddings, pairs, labels, epochs=3)
        return model.rewards(test.embeddings)

    first = fit(5)
    np.testing.assert_array_equal(first, fit(5))
    assert not np.allclose(first, fit(6))


def test_warm_start_continues_and_cold_start_reinitialises(linear_task):
    train, test, pairs, labels = linear_task
    pairs, labels = pairs[:600], labels[:600]
    model = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=3)
    once = model.fit(train.embeddings, pairs, labels, epochs=2, val_fraction=0).rewards(
        test.embeddings
    )
    model.fit(train.embeddings, pairs, labels, epochs=2, val_fraction=0, warm_start=True)
    twice = model.rewards(test.embeddings)
    assert not np.allclose(once, twice)
    model.fit(train.embeddings, pairs, labels, epochs=2, val_fraction=0)
    np.testing.assert_array_equal(model.rewards(test.embeddings), once)


def test_fit_draws_the_initial_weights_again_only_where_they_may_have_changed(linear_task):
    train, test, pairs, labels = linear_task
    pairs, labels = pairs[:200], labels[:200]
    options = {"epochs": 2, "seed": 4}

    def counted(model: RewardModel) -> list[int]:
        draws: list[int] = []
        draw = model._init_parameters
        model._init_parameters = lambda seed: draws.append(seed) or draw(seed)
        return draws

    other = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=0)
    other_draws = counted(other)
    expected = other.fit(train.embeddings, pairs, labels, **options).rewards(test.embeddings)
    assert other_draws == [4]  # seed 0's weights: fit draws seed 4's
    fresh = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=4)
    fresh_draws = counted(fresh)
    fresh.fit(train.embeddings, pairs, labels, **options)
    assert fresh_draws == []  # just drawn from seed 4: kept, and the same model
    np.testing.assert_array_equal(fresh.rewards(test.embeddings), expected)
    fresh.fit(train.embeddings, pairs, labels, **options)
    assert fresh_draws == [4]  # trained weights are drawn again
    np.testing.assert_array_equal(fresh.rewards(test.embeddings), expected)
    handed_out = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=4)
    handed_out_draws = counted(handed_out)
    for p in handed_out.parameters():
        p.mul_(-1)  # the caller may change the weights parameters() hands out
    handed_out.fit(train.embeddings, pairs, labels, **options)
    assert handed_out_draws == [4]
    np.testing.assert_array_equal(handed_out.rewards(test.embeddings), expected)


@pytest.mark.parametrize(("responses", "pairs"), [(6, 40), (30, 20), (200, 64), (2, 1)])
def test_a_batch_forwards_each_distinct_response_once_and_loses_no_pair_side(rng, responses, pairs):
    model = RewardModel(5, hidden=(8, 4), ensemble=3, seed=1)
    x = torch.from_numpy(rng.normal(size=(responses, 5)).astype(np.float32))
    first = rng.integers(0, responses, size=(3, pairs))
    second = (first + rng.integers(1, max(responses, 2), size=(3, pairs))) % responses
    sides = np.concatenate([first, second], axis=1)
    distinct, at = _distinct_rows(sides)
    counts = [np.unique(member).size for member in sides]
    assert distinct.shape == (3, max(counts)) and at.shape == sides.shape
    for e in range(3):
        assert set(distinct[e]) == set(sides[e])  # padded with its own responses only
        np.testing.assert_array_equal(distinct[e, at[e]], sides[e])
    y = torch.from_numpy(rng.integers(0, 2, size=(3, pairs))).float()
    forwarded = []
    forward = model._forward
    model._forward = lambda rows, params: forwarded.append(rows.shape) or forward(rows, params)
    loss = model._batch_loss(
        x, torch.from_numpy(distinct), torch.from_numpy(at), y, params=model._parameters()
    )
    assert forwarded == [(3, max(counts), 5)]
    # every pair side forwarded, in float64: the loss of the pairs themselves
    r = torch.einsum("end,ed->en", forward(x).double(), torch.from_numpy(model.theta).double())
    margin = torch.stack([r[e, first[e]] - r[e, second[e]] for e in range(3)])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        margin, y.double(), reduction="none"
    ).mean(dim=1)
    np.testing.assert_allclose(loss.detach().numpy(), expected.numpy(), rtol=1e-5)


def test_early_stopping_keeps_each_members_best_epoch(linear_task):
    train, _, pairs, labels = linear_task
    model = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=0)
    model.fit(train.embeddings, pairs[:400], labels[:400], epochs=40, patience=2, lr=3e-2)
    history = model.history_
    val = np.array(history.val_loss)
    assert val.shape == (len(history.train_loss), 2)
    assert history.num_val_pairs == 40 and history.num_train_pairs == 360
    np.testing.assert_array_equal(history.best_epoch, val.argmin(axis=0))
    # stopped at the first epoch where every member had gone `patience` epochs without a gain
    last, best = len(history.train_loss) - 1, np.array(history.best_epoch)
    assert last == 39 or ((last - best).min() >= 2 and (last - 1 - best).min() < 2)


def test_each_member_stops_on_its_own_and_stays_at_its_best(linear_task):
    train, test, pairs, labels = linear_task
    patience = 2
    model = RewardModel(train.dim, hidden=(16,), ensemble=3, seed=2)
    model.fit(train.embeddings, pairs[:300], labels[:300], epochs=60, patience=patience, lr=3e-2)
    history = model.history_
    val, best = np.array(history.val_loss), np.array(history.best_epoch)
    stops = best + patience  # the epoch each member ran out of patience
    assert len(val) == stops.max() + 1 < 60  # the fit ends with the last member
    assert len(set(stops)) > 1, "the members should stop at different epochs here"
    for member, stop in enumerate(stops):
        trained = val[: stop + 1, member]
        assert (trained[best[member] + 1 :] >= trained[best[member]]).all()
        # after its stop a member is its best weights: its held-out loss stays its best
        np.testing.assert_array_equal(val[stop + 1 :, member], trained.min())
    # the kept weights are each member's best, whichever epoch the fit ended at: their loss
    # on the held-out pairs (the seed's first 30 of a permutation, as fit draws them)
    held_out = np.random.default_rng(2).permutation(300)[:30]
    i, j = pairs[held_out].T
    margin = torch.from_numpy(model.rewards(train.embeddings)).double()
    margin = margin[:, i] - margin[:, j]
    y = torch.from_numpy(labels[held_out]).double().expand_as(margin)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, y, reduction="none")
    np.testing.assert_allclose(loss.mean(dim=1).numpy(), val.min(axis=0), rtol=1e-5)


def test_single_head_and_shared_data_ensemble(linear_task):
    train, test, pairs, labels = linear_task
    pairs, labels = pairs[:600], labels[:600]
    single = RewardModel(train.dim, hidden=(16,), seed=0).fit(
        train.embeddings, pairs, labels, epochs=2
    )
    assert single.rewards(test.embeddings).shape == (1, test.n)
    shared = RewardModel(train.dim, hidden=(16,), ensemble=2, seed=0)
    shared.fit(train.embeddings, pairs, labels, epochs=2, bootstrap=False)
    rewards = shared.rewards(test.embeddings)
    assert not np.allclose(rewards[0], rewards[1])  # own initialisation and order per member


def test_linear_head_features_are_the_embeddings(linear_task):
    train, test, pairs, labels = linear_task
    model = RewardModel(train.dim, hidden=(), ensemble=2).fit(
        train.embeddings, pairs, labels, epochs=2
    )
    features = model.features(test.embeddings)
    np.testing.assert_array_equal(features[1], test.embeddings)
    assert model.theta.shape == (2, train.dim)


def test_torch_input_gives_torch_output_and_save_load_round_trips(fitted, linear_task, tmp_path):
    _, test, _, _ = linear_task
    x = torch.from_numpy(test.embeddings)
    rewards = fitted.rewards(x)
    assert isinstance(rewards, torch.Tensor) and rewards.shape == (3, test.n)
    np.testing.assert_array_equal(rewards.numpy(), fitted.rewards(test.embeddings))
    path = tmp_path / "head.pt"
    fitted.save(path)
    loaded = RewardModel.load(path)
    assert loaded.hidden == (32, 32) and loaded.ensemble == 3
    np.testing.assert_array_equal(loaded.rewards(test.embeddings), fitted.rewards(test.embeddings))
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a saved RewardModel"):
        RewardModel.load(tmp_path / "other.pt")


def test_unreadable_model_files_are_value_errors_naming_the_file(tmp_path, recwarn):
    path = tmp_path / "head.pt"
    RewardModel(4, hidden=(8,)).save(path)
    whole = path.read_bytes()
    for name, content in [
        ("truncated.pt", whole[: len(whole) // 2]),
        ("empty.pt", b""),
        ("zeroed.pt", whole[:100] + bytes(200) + whole[300:]),
        ("text.pt", b"not a model\n"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name} is not a saved RewardModel \(.+\)$"):
            RewardModel.load(tmp_path / name)
    saved = torch.load(path, weights_only=True)
    torch.save({**saved, "parameters": saved["parameters"][:1]}, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short\.pt: not a valid saved RewardModel \(expected 3"):
        RewardModel.load(tmp_path / "short.pt")
    torch.save({**saved, "config": {"input_dim": 4}}, tmp_path / "config.pt")
    with pytest.raises(ValueError, match=r"config\.pt: not a valid saved RewardModel"):
        RewardModel.load(tmp_path / "config.pt")
    assert not recwarn.list  # torch's notes on foreign pickles are not passed on
    with pytest.raises(FileNotFoundError):
        RewardModel.load(tmp_path / "missing.pt")


def test_a_damaged_or_foreign_model_file_never_loads_as_other_weights(tmp_path):
    """torch.load checks no CRC: one flipped bit in a weight's bytes loaded as other weights.
    Parameters that are sparse, on the meta device or complex escaped as torch's errors or
    lost their imaginary part."""
    path = tmp_path / "head.pt"
    RewardModel(4, hidden=(8,), seed=3).save(path)
    whole = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        weights = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    local = weights.header_offset  # the local header's name and extra lengths (torch pads)
    lengths = int.from_bytes(whole[local + 26 : local + 28], "little") + int.from_bytes(
        whole[local + 28 : local + 30], "little"
    )
    start = local + 30 + lengths
    whole[start + 5] ^= 0x10  # inside the first weight's float32 bytes
    (tmp_path / "flipped.pt").write_bytes(bytes(whole))
    with pytest.raises(
        ValueError,
        match=r"flipped\.pt is not a saved RewardModel \(a damaged archive: the "
        r"CRC of .*data/0 does not match\)$",
    ):
        RewardModel.load(tmp_path / "flipped.pt")
    saved = torch.load(path, weights_only=True)
    first = saved["parameters"][0]
    for what, odd in [
        ("sparse_coo torch.float32", first.to_sparse()),
        ("strided torch.float32 tensor on the meta device", first.to("meta")),
        ("strided torch.complex64", first.to(torch.complex64)),
        ("strided torch.int64", first.long()),
    ]:
        torch.save({**saved, "parameters": [odd, *saved["parameters"][1:]]}, tmp_path / "odd.pt")
        with pytest.raises(ValueError, match=rf"odd\.pt: not a valid saved RewardModel \(a "
                           rf"parameter is a torch\.{what}"):  # fmt: skip
            RewardModel.load(tmp_path / "odd.pt")


def test_empty_input_gives_empty_output():
    model = RewardModel(4, hidden=(8,), ensemble=2)
    assert model.rewards(np.zeros((0, 4), np.float32)).shape == (2, 0)
    assert model.features(np.zeros((0, 4), np.float32)).shape == (2, 0, 8)


def test_errors_name_the_argument_and_the_value():
    model = RewardModel(4, hidden=(8,), ensemble=2)
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    labels = np.array([1, 0, 1])
    with pytest.raises(ValueError, match=r"embeddings must have shape \(n, 4\), got \(10, 3\)"):
        model.rewards(x[:, :3])
    with pytest.raises(ValueError, match=r"embeddings must be finite, got nan at index \(2, 1\)"):
        bad = x.copy()
        bad[2, 1] = np.nan
        model.fit(bad, pairs, labels)
    with pytest.raises(TypeError, match="embeddings must be floating point"):
        model.features(np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"pairs\[1\] = \(2, 10\) is out of range for 10"):
        model.fit(x, np.array([[0, 1], [2, 10]]), labels[:2])
    with pytest.raises(ValueError, match=r"pairs\[0\] = \(7, 7\) compares a response with itself"):
        model.fit(x, np.array([[7, 7]]), labels[:1])
    with pytest.raises(ValueError, match="labels must be 0 or 1, got 2 at index 2"):
        model.fit(x, pairs, np.array([1, 0, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\), got \(2,\)"):
        model.fit(x, pairs, labels[:2])
    with pytest.raises(ValueError, match="pairs is empty"):
        model.fit(x, np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        model.fit(x, pairs, labels, epochs=0)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        model.fit(x, pairs, labels, val_fraction=1.0)
    with pytest.raises(ValueError, match="lr must be a positive finite number, got -0.1"):
        model.fit(x, pairs, labels, lr=-0.1)
    with pytest.raises(ValueError, match="ensemble must be a positive integer, got 0"):
        RewardModel(4, ensemble=0)
    with pytest.raises(TypeError, match="hidden widths must be an integer, got float 8.5"):
        RewardModel(4, hidden=(8.5,))
    for width, shown in ((3, "int 3"), ("64", "str '64'"), (None, "NoneType None")):
        with pytest.raises(
            TypeError, match=f"^hidden must be a sequence of positive integers, got {shown}$"
        ):
            RewardModel(4, hidden=width)


@pytest.mark.parametrize(
    "device, error, message",
    [
        (
            "tpu",
            ValueError,
            "device must name a device such as 'cpu', 'cuda' or 'cuda:1', got 'tpu'",
        ),
        ("meta", ValueError, "device is meta; only CPU and CUDA devices are supported"),
        (1.5, TypeError, "device must be a str, int or torch.device, got float"),
    ],
)
def test_a_device_torch_cannot_use_is_named_before_any_file_is_read(
    device, error, message, tmp_path
):
    saved = tmp_path / "model.pt"
    RewardModel(4, hidden=(3,)).save(saved)
    with pytest.raises(error, match=re.escape(message)):
        RewardModel(4, device=device)
    with pytest.raises(error, match=re.escape(message)):  # not "not a saved RewardModel"
        RewardModel.load(saved, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_is_named():
    with pytest.raises(ValueError, match=r"device is cuda:0, but torch .* sees no GPU here"):
        RewardModel(4, device="cuda:0")


def test_members_beyond_the_memory_are_refused_before_any_allocation(monkeypatch):
    from activerm_fast.model import reward_model

    # 2 members of 8*16+16 + 16*4+4 + 4 = 216 parameters: 6,912 bytes to fit
    monkeypatch.setattr(reward_model, "device_memory", lambda device: 6_911)
    with pytest.raises(
        ValueError,
        match=re.escape("ensemble=2 members of 216 parameters (input_dim=8, hidden=(16, 4)) need "),
    ):
        RewardModel(8, hidden=(16, 4), ensemble=2)
    monkeypatch.setattr(reward_model, "device_memory", lambda device: 6_912)
    assert RewardModel(8, hidden=(16, 4), ensemble=2).ensemble == 2


def test_features_and_rewards_come_from_one_forward_pass(rng):
    model = RewardModel(6, hidden=(8,), ensemble=2, seed=0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    calls = []
    forward = model._forward
    model._forward = lambda chunk: calls.append(1) or forward(chunk)
    features, rewards = model.features_and_rewards(x)
    assert len(calls) == 1
    model._forward = forward
    np.testing.assert_array_equal(features, model.features(x))
    np.testing.assert_array_equal(rewards, model.rewards(x))


def test_embeddings_that_overflow_the_layers_are_refused_not_made_nan():
    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(size=(40, 8)), -1, 1).astype(np.float32)
    pairs = np.array([[0, 5], [1, 9], [2, 13], [3, 17], [4, 21], [6, 25], [7, 29], [8, 33]])
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    model = RewardModel(8, hidden=(16,), ensemble=2).fit(x, pairs, labels)
    huge = x * np.float32(3e38)  # finite float32, but the first layer's sums overflow
    for output in (model.rewards, model.features, model.features_and_rewards):
        with pytest.raises(ValueError, match=r"overflow the reward model's float32 layers"):
            output(huge)
    assert np.isfinite(model.rewards(x * np.float32(1e30))).all()  # large but representable


@pytest.mark.parametrize(
    "settings", [{"lr": 1e30}, {"weight_decay": 1e30}, {"lr": 1e30, "val_fraction": 0.0}]
)
def test_a_fit_that_diverges_is_refused_and_the_weights_put_back(settings):
    dataset = synthetic(12, 10, 4, 6, dim=4).train()
    pairs = np.array([[i, i + 1] for i in range(0, dataset.n - 1, 2)])
    labels = (dataset.gold[pairs[:, 0]] > dataset.gold[pairs[:, 1]]).astype(np.int64)
    model = RewardModel(4, hidden=(8,), ensemble=2)
    before = model.rewards(dataset.embeddings)
    with pytest.raises(
        ValueError, match=r"^the fit diverged: the training loss is nan at epoch \d+ \(lr="
    ):
        model.fit(dataset.embeddings, pairs, labels, **settings)
    # the untrained weights, not NaN ones
    np.testing.assert_array_equal(model.rewards(dataset.embeddings), before)


@pytest.mark.parametrize("patience", [2**63 - 1, 2**63, 2**64, 10**30])
def test_a_patience_of_every_epoch_or_more_never_stops_early(patience):
    dataset = synthetic(12, 10, 4, 6, dim=4).train()
    pairs = np.array([[i, i + 1] for i in range(0, dataset.n - 1, 2)])
    labels = (dataset.gold[pairs[:, 0]] > dataset.gold[pairs[:, 1]]).astype(np.int64)

    def fitted(patience: int) -> RewardModel:
        return RewardModel(4, hidden=(8,)).fit(
            dataset.embeddings, pairs, labels, epochs=30, patience=patience
        )

    model = fitted(patience)
    assert len(model.history_.train_loss) == 30  # 2**63 used to wrap and stop after one
    np.testing.assert_array_equal(
        model.rewards(dataset.embeddings), fitted(30).rewards(dataset.embeddings)
    )


def test_files_that_are_not_saved_models_are_named(tmp_path):
    (tmp_path / "text.pt").write_text("hello world")
    (tmp_path / "passwd.pt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "zeros.pt").write_bytes(bytes(1000))
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))
    for name in ("text.pt", "passwd.pt", "zeros.pt"):
        with pytest.raises(ValueError, match=rf"{name} is not a saved RewardModel \(not a torch"):
            RewardModel.load(tmp_path / name)
    with pytest.raises(ValueError, match=r"arrays\.npz is not a saved RewardModel \("):
        RewardModel.load(tmp_path / "arrays.npz")
    with pytest.raises(ValueError, match="is a folder, not a saved RewardModel file"):
        RewardModel.load(tmp_path)


def test_a_saved_model_of_non_finite_weights_is_refused_when_loaded(tmp_path):
    model = RewardModel(4, hidden=(3,))
    path = tmp_path / "nan.pt"
    model.save(path)
    saved = torch.load(path, weights_only=True)
    saved["parameters"][1][0, 2] = float("nan")
    torch.save(saved, path)
    with pytest.raises(ValueError, match=r"nan\.pt: not a valid saved RewardModel \(its weights"):
        RewardModel.load(path)
