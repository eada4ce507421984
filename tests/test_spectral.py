"""Tests for diagnostics.spectral: parity with dse-dsmi 1.1, closed forms, invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diagnostics.spectral import (
    alpha_req,
    cluster_reference,
    diffusion_spectral_entropy,
    diffusion_spectral_mutual_information,
    effective_rank,
    median_sigma,
    von_neumann_entropy,
)

dse_dsmi = pytest.importorskip("dse_dsmi")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BITS = 1e-6  # parity tolerance, in bits


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Run this module's dense linear algebra on one thread (torch and numpy's BLAS).

    The test machines are shared: a 2-thread eigensolver on a busy machine spends most
    of its time waiting for its second thread (10-40x slower here). Restored afterwards.
    """
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- data


def blobs(n=400, d=32, k=10, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=scale, size=(k, d))
    y = np.arange(n) % k
    return centres[y] + rng.normal(size=(n, d)), y


def embed(u, d_ambient, seed=0):
    """Embed (n, k) points isometrically in d_ambient dimensions (random orthonormal map)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d_ambient, u.shape[1])))
    return u @ q.T


def sphere(n, k=2, radius=15.0, d_ambient=100, seed=0):
    """n points on the k-sphere of the given radius, embedded in d_ambient dimensions."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, k + 1))
    u = radius * u / np.linalg.norm(u, axis=1, keepdims=True)
    return embed(u, d_ambient, seed + 1)


def swiss_roll(n, d_ambient=100, seed=0):
    rng = np.random.default_rng(seed)
    s = 1.5 * np.pi * (1 + 2 * rng.random(n))
    h = 20 * rng.random(n)
    u = np.stack([s * np.cos(s), h, s * np.sin(s)], axis=1)
    return embed(u, d_ambient, seed + 1)


@pytest.fixture(scope="module")
def digits_mlp():
    """Hidden layer of a small MLP trained for a few steps on scikit-learn's digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data[:1000] / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target[:1000])
    torch.manual_seed(0)
    hidden = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU())
    head = torch.nn.Linear(64, 10)
    opt = torch.optim.Adam([*hidden.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(hidden(x)), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        h = hidden(x).double().numpy()
    # sanity: the network learnt something (so these are real representations)
    assert float(loss.detach()) < 1.0
    return h, y.numpy(), data.data[:1000].astype(np.float64)


def official_dse(x, **kw):
    return float(dse_dsmi.diffusion_spectral_entropy(x, **kw))


def official_dsmi(x, ref, **kw):
    mi, clusters = dse_dsmi.diffusion_spectral_mutual_information(x, ref, **kw)
    return float(mi), clusters


# --------------------------------------------------------------------------- DSE parity


@pytest.mark.parametrize("sigma,t", [(10.0, 1), (4.0, 2)])
def test_dse_matches_reference_on_blobs(sigma, t):
    x, _ = blobs()
    ours = float(diffusion_spectral_entropy(x, sigma=sigma, t=t, base=2))
    ref = official_dse(x, gaussian_kernel_sigma=sigma, t=t)
    assert abs(ours - ref) < BITS
    assert 1.0 < ours < math.log2(len(x))  # a non-degenerate spectrum, not a trivial case


@pytest.mark.parametrize("maker", [sphere, swiss_roll], ids=["2-sphere", "swiss-roll"])
def test_dse_matches_reference_on_manifolds_in_high_dim(maker):
    x = maker(500)
    ours = float(diffusion_spectral_entropy(x, base=2))
    assert abs(ours - official_dse(x)) < BITS
    # nats by default
    assert float(diffusion_spectral_entropy(x)) == pytest.approx(ours * math.log(2), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_dse_matches_reference_with_subsampling(seed):
    x, _ = blobs(n=600, seed=1)
    ours = float(diffusion_spectral_entropy(x, max_n=500, seed=seed, base=2))
    assert abs(ours - official_dse(x, max_N=500, random_seed=seed)) < BITS
    # the subsample matters (so the parity above is not trivially satisfied)
    assert abs(ours - float(diffusion_spectral_entropy(x, max_n=None, base=2))) > 1e-3


def test_dse_and_dsmi_match_reference_on_mlp_hidden_layer(digits_mlp):
    h, y, _ = digits_mlp
    for sigma in (10.0, float(median_sigma(h))):
        ours = float(diffusion_spectral_entropy(h, sigma=sigma, base=2))
        assert abs(ours - official_dse(h, gaussian_kernel_sigma=sigma)) < BITS
    sigma = float(median_sigma(h))
    ours = float(diffusion_spectral_mutual_information(h, y, sigma=sigma, base=2))
    ref, _ = official_dsmi(h, y, gaussian_kernel_sigma=sigma)
    assert abs(ours - ref) < BITS
    assert ours > 0.1  # a trained layer carries label information


# --------------------------------------------------------------------------- DSMI parity


def test_dsmi_matches_reference_with_integer_labels():
    x, y = blobs(n=500, d=16, k=7, scale=1.0, seed=2)  # unequal cluster sizes: 72 / 71
    ours = float(diffusion_spectral_mutual_information(x, y, base=2))
    ref, _ = official_dsmi(x, y)
    assert abs(ours - ref) < BITS
    ours_r = float(diffusion_spectral_mutual_information(x, y, repetitions=3, seed=5, base=2))
    ref_r, _ = official_dsmi(x, y, num_repetitions=3, random_seed=5)
    assert abs(ours_r - ref_r) < BITS


def test_dsmi_matches_reference_when_clusters_share_sizes():
    # equal-sized clusters share their random subsets (evaluated once per size)
    rng = np.random.default_rng(4)
    labels = np.array([0] * 100 + [1] * 100 + [2] * 50 + [3] * 50 + [4] * 37)
    x = rng.normal(size=(len(labels), 12)) + labels[:, None] * 0.4
    for seed in (0, 3):
        ours = float(diffusion_spectral_mutual_information(x, labels, seed=seed, base=2))
        ref, _ = official_dsmi(x, labels, random_seed=seed)
        assert abs(ours - ref) < BITS


@pytest.mark.parametrize("threads", [1, 2])
def test_dsmi_with_unbalanced_classes_matches_reference_serial_and_pooled(threads):
    # every cluster size differs: each set is its own eigensolve; with 2 threads they run on
    # the pool of workers (diffusion._parallel_plan), with 1 in this thread: same numbers
    from diagnostics.estimators import diffusion

    rng = np.random.default_rng(7)
    labels = rng.permutation(np.repeat(np.arange(6), [20, 45, 70, 95, 130, 160]))
    x = rng.normal(size=(len(labels), 10)) + labels[:, None] * 0.5
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert diffusion._parallel_plan(torch.device("cpu"), 36)[0] == threads
        ours = float(diffusion_spectral_mutual_information(x, labels, base=2))
    finally:
        torch.set_num_threads(before)
    ref, _ = official_dsmi(x, labels)
    assert abs(ours - ref) < BITS


@pytest.mark.parametrize("threads", [1, 2])
def test_dsmi_with_large_clusters_matches_reference_to_rounding(threads):
    # pooled (2 threads): torch's eigensolver; serial (1): numpy's from 128 points; the
    # points centred and scaled once for all subsets
    rng = np.random.default_rng(13)
    sizes = [40, 256, 301]
    labels = rng.permutation(np.repeat(np.arange(3), sizes))
    x = rng.normal(size=(len(labels), 12)) + labels[:, None] * 0.7
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = float(diffusion_spectral_mutual_information(x, labels, sigma=4.0, base=2))
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    ref, _ = official_dsmi(x, labels, gaussian_kernel_sigma=4.0)
    assert abs(ours - ref) < 1e-12


def test_dsmi_small_operations_on_one_thread_eigensolves_on_all(monkeypatch):
    # the calling thread's small operations run on one thread (an idle OpenMP thread is
    # slow to wake), the workers are planned for all threads, and the count is restored,
    # also after an error
    from diagnostics.estimators import diffusion, dsmi

    seen = {}
    draw, plan = dsmi._dsmi_groups, diffusion._parallel_plan

    def spy_draw(*args, **kwargs):
        seen["draw"] = torch.get_num_threads()
        return draw(*args, **kwargs)

    def spy_plan(*args):
        seen["plan"] = plan(*args)
        return seen["plan"]

    monkeypatch.setattr(dsmi, "_dsmi_groups", spy_draw)
    monkeypatch.setattr(diffusion, "_parallel_plan", spy_plan)
    rng = np.random.default_rng(15)
    labels = np.repeat(np.arange(3), [20, 30, 40])
    x = rng.normal(size=(90, 4))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        diffusion_spectral_mutual_information(x, labels)
        assert seen == {"draw": 1, "plan": (2, 1)} and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="repetitions"):
            diffusion_spectral_mutual_information(x, labels, repetitions=0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_dse_of_many_sets_equals_one_set_at_a_time(monkeypatch):
    # the pooled path, the serial path and the large-kernel path give each set its own DSE
    from diagnostics.estimators import diffusion

    rng = np.random.default_rng(8)
    z = torch.from_numpy(rng.normal(size=(300, 6)))
    sets = [torch.from_numpy(rng.choice(300, n, replace=False)) for n in (40, 90, 40, 200, 15)]
    one = [float(diffusion_spectral_entropy(z[s], sigma=2.0)) for s in sets]
    before = torch.get_num_threads()
    try:
        for threads, chunk in ((2, 1 << 24), (1, 1 << 24), (2, 100 * 100)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(diffusion, "_CHUNK_ENTRIES", chunk)  # 200-point sets: too large
            got = diffusion._diffusion_entropies_sets(z, sets, 2.0, 1.0, torch.float64).tolist()
            assert got == pytest.approx(one, abs=1e-12), (threads, chunk)
    finally:
        torch.set_num_threads(before)


def test_pooled_workers_hold_no_more_kernel_entries_than_the_serial_path(monkeypatch):
    # each of W workers builds at most _CHUNK_ENTRIES / W kernel entries at once; larger
    # sets go one at a time in this thread (all threads)
    import threading

    from diagnostics.estimators import diffusion

    built: list[tuple[str, int]] = []
    kernel = diffusion._kernel

    def spy(v, s):
        built.append((threading.current_thread().name, v.shape[0] * v.shape[1] ** 2))
        return kernel(v, s)

    monkeypatch.setattr(diffusion, "_kernel", spy)
    monkeypatch.setattr(diffusion, "_CHUNK_ENTRIES", 60 * 60 * 2)  # share: 3600 per worker
    rng = np.random.default_rng(10)
    z = torch.from_numpy(rng.normal(size=(200, 4)))
    sets = [torch.from_numpy(rng.choice(200, n, replace=False)) for n in (20,) * 6 + (50, 50, 70)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = diffusion._diffusion_entropies_sets(z, sets, 1.5, 1.0, torch.float64).tolist()
    finally:
        torch.set_num_threads(before)
    pooled = [e for name, e in built if name.startswith("infoscope-dse")]
    here = [e for name, e in built if not name.startswith("infoscope-dse")]
    assert pooled and max(pooled) <= 3600 and here == [70 * 70]  # 70 * 70 > 3600: in here
    one = [float(diffusion_spectral_entropy(z[s], sigma=1.5)) for s in sets]
    assert got == pytest.approx(one, abs=1e-12)


def test_dse_of_groups_drawn_while_the_workers_run(monkeypatch):
    # groups from a generator go to the workers as they are drawn (the draws in Python
    # under a short GIL switch interval, restored after); a group too large for a worker's
    # share waits for the workers to be idle; an error in the generator leaves nothing
    # running and the settings as they were
    import sys

    from diagnostics.estimators import diffusion

    rng = np.random.default_rng(11)
    z = torch.from_numpy(rng.normal(size=(300, 5)))
    shapes = [(3, 80), (2, 60), (4, 25), (1, 7), (2, 120)]
    sets = [rng.choice(300, (m, n)) for m, n in shapes]
    one = [float(diffusion_spectral_entropy(z[r], sigma=2.0)) for s in sets for r in s]
    intervals = []

    def groups(fail=False):
        for i, s in enumerate(sets):
            intervals.append(sys.getswitchinterval())
            if fail and i == 2:
                raise RuntimeError("drawing failed")
            yield torch.from_numpy(s)

    before, interval = torch.get_num_threads(), sys.getswitchinterval()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(diffusion, "_CHUNK_ENTRIES", 2 * 100 * 100)  # 120: in this thread
        got = diffusion._diffusion_entropies_groups(z, shapes, groups(), 2.0, 1.0, torch.float64)
        assert got.tolist() == pytest.approx(one, abs=1e-12)
        assert max(intervals) <= diffusion._SWITCH_INTERVAL < interval
        assert sys.getswitchinterval() == interval and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="drawing failed"):
            diffusion._diffusion_entropies_groups(
                z, shapes, groups(fail=True), 2.0, 1.0, torch.float64
            )
        assert sys.getswitchinterval() == interval and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_dsmi_with_subsampled_clusters_equals_its_definition(threads):
    # clusters larger than max_n are subsampled as dse-dsmi's DSE does (its random.seed
    # inside the DSE also moves the subsets' generator); the draws do not depend on the
    # order in which the clusters are evaluated (the largest first)
    import random

    rng = np.random.default_rng(12)
    labels = rng.permutation(np.repeat(np.arange(5), [30, 95, 60, 95, 140]))
    x = rng.normal(size=(len(labels), 6)) + labels[:, None] * 0.5
    n, max_n, seed, reps = len(labels), 80, 3, 4

    def dse(rows):
        return float(diffusion_spectral_entropy(x[rows], max_n=max_n, seed=seed))

    want = 0.0
    for c in range(5):
        members = np.flatnonzero(labels == c)
        gen = random.Random(seed)
        marg = 0.0
        for _ in range(reps):
            picked = gen.sample(range(n), len(members))
            marg += dse(picked)
            if len(members) > max_n:
                gen.seed(seed)  # dse-dsmi's DSE: random.seed(seed); random.sample(...)
                gen.sample(range(len(members)), max_n)
        want += len(members) / n * (marg / reps - dse(members))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = diffusion_spectral_mutual_information(
            x, labels, max_n=max_n, seed=seed, repetitions=reps
        )
    finally:
        torch.set_num_threads(before)
    assert float(got) == pytest.approx(want, abs=1e-12)


def _dsmi_in_child(x, labels, q):
    torch.set_num_threads(2)
    q.put(float(diffusion_spectral_mutual_information(x, labels, base=2)))


def test_dsmi_thread_pool_survives_a_fork():
    # the eigensolver threads are kept between calls; a forked child (a DataLoader worker)
    # has none of them and must start its own rather than wait forever
    import multiprocessing as mp

    from diagnostics.estimators import diffusion

    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(4), [30, 50, 70, 90])
    x = rng.normal(size=(len(labels), 6)) + labels[:, None] * 0.5
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        here = float(diffusion_spectral_mutual_information(x, labels, base=2))
        assert diffusion._POOL is not None  # the pool ran in this process
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        child = ctx.Process(target=_dsmi_in_child, args=(x, labels, q))
        child.start()
        child.join(timeout=120)
        assert child.exitcode == 0, "the child hung or failed"
        assert q.get(timeout=5) == pytest.approx(here, abs=1e-12)
    finally:
        torch.set_num_threads(before)


def test_dsmi_matches_reference_with_continuous_1d_reference():
    x, y = blobs(n=500, d=16, scale=1.0, seed=3)
    r = x[:, 0] + 0.5 * np.random.default_rng(0).normal(size=len(x))
    ours = float(diffusion_spectral_mutual_information(x, r, base=2, n_clusters=8))
    ref, ref_clusters = official_dsmi(x, r, n_clusters=8)
    assert abs(ours - ref) < BITS
    assert np.array_equal(cluster_reference(r, n_clusters=8).numpy(), ref_clusters.ravel())


def test_dsmi_with_multidim_reference_clustered_once_and_reused(digits_mlp):
    h, _, pixels = digits_mlp
    h, pixels = h[:600], pixels[:600]
    z_early = pixels @ np.random.default_rng(0).normal(size=(64, 32)) / 30.0  # a random layer
    ref1, ref_clusters = official_dsmi(z_early, pixels)
    clusters = cluster_reference(pixels)  # once
    assert np.array_equal(clusters.numpy(), ref_clusters)
    ours1 = float(diffusion_spectral_mutual_information(z_early, clusters=clusters, base=2))
    assert abs(ours1 - ref1) < BITS
    # reused at a later "epoch": the reference skips clustering with precomputed_clusters
    ref2, _ = official_dsmi(h, pixels, precomputed_clusters=ref_clusters)
    ours2 = float(diffusion_spectral_mutual_information(h, clusters=clusters, base=2))
    assert abs(ours2 - ref2) < BITS
    # passing the reference itself clusters it the same way
    ours3 = float(diffusion_spectral_mutual_information(h, pixels, base=2))
    assert ours3 == pytest.approx(ours2, abs=1e-12)


# --------------------------------------------------------------------------- DSE behaviour


def _cube(n, k, d_ambient=64, side=12.0, seed=0):
    u = side * np.random.default_rng(seed).random((n, k))
    return embed(u, d_ambient, seed + 1)


def test_dse_rises_with_intrinsic_dimension_and_resists_ambient_noise():
    n, dims = 400, [1, 2, 4, 8]
    clean = [float(diffusion_spectral_entropy(_cube(n, k))) for k in dims]
    assert all(a < b for a, b in zip(clean, clean[1:])), clean
    rng = np.random.default_rng(9)
    noisy = [
        float(diffusion_spectral_entropy(_cube(n, k) + 0.1 * rng.normal(size=(n, 64))))
        for k in dims
    ]
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy
    gaps = min(b - a for a, b in zip(clean, clean[1:]))
    for c, z in zip(clean, noisy):
        assert abs(c - z) < 0.25 * gaps, (clean, noisy)


def test_dse_invariant_to_rotation_translation_and_permutation():
    x, y = blobs(n=300, d=20)
    h = float(diffusion_spectral_entropy(x))
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(20, 20)))
    perm = np.random.default_rng(2).permutation(len(x))
    assert float(diffusion_spectral_entropy(x @ q + 5.0)) == pytest.approx(h, abs=1e-9)
    assert float(diffusion_spectral_entropy(x[perm])) == pytest.approx(h, abs=1e-9)
    mi = float(diffusion_spectral_mutual_information(x, y))
    assert float(diffusion_spectral_mutual_information(x @ q, y)) == pytest.approx(mi, abs=1e-9)
    assert mi > 0.1


def test_dsmi_is_near_zero_for_uninformative_labels():
    x, y = blobs(n=400, d=16, scale=3.0)
    informative = float(diffusion_spectral_mutual_information(x, y))
    shuffled = float(
        diffusion_spectral_mutual_information(x, np.random.default_rng(0).permutation(y))
    )
    assert informative > 1.0
    assert abs(shuffled) < 0.1 * informative


def test_median_sigma():
    x, _ = blobs(n=300, d=8)
    s = float(median_sigma(x))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)[np.triu_indices(len(x), 1)]
    assert s == pytest.approx(float(np.median(d)), rel=1e-10)
    assert float(median_sigma(7.0 * x)) == pytest.approx(7.0 * s, rel=1e-10)
    # sigma="median" is the same as passing the value; scale-free
    h = float(diffusion_spectral_entropy(x, sigma="median"))
    assert h == pytest.approx(float(diffusion_spectral_entropy(x, sigma=s)), abs=1e-12)
    assert float(diffusion_spectral_entropy(100 * x, sigma="median")) == pytest.approx(h, abs=1e-9)
    assert float(diffusion_spectral_entropy(x, sigma=median_sigma(x))) == pytest.approx(
        h, abs=1e-12
    )


def test_faster_modes_are_close_to_exact():
    x = sphere(600, k=2)
    exact = float(diffusion_spectral_entropy(x, base=2))
    f32 = float(diffusion_spectral_entropy(x, base=2, dtype=torch.float32))
    assert abs(f32 - exact) < 1e-3
    top = float(diffusion_spectral_entropy(x, base=2, top_k=100))
    assert abs(top - exact) < 1e-3
    xb, y = blobs(n=600, d=32)
    exact_b = float(diffusion_spectral_entropy(xb, base=2))
    assert abs(float(diffusion_spectral_entropy(xb, base=2, top_k=150)) - exact_b) < 0.05
    assert float(diffusion_spectral_entropy(xb, base=2, top_k=599)) == pytest.approx(
        exact_b, abs=1e-9
    )
    mi = float(diffusion_spectral_mutual_information(xb, y, base=2))
    mi32 = float(diffusion_spectral_mutual_information(xb, y, base=2, dtype=torch.float32))
    assert abs(mi32 - mi) < 1e-3


def test_cluster_reference_rules():
    labels = np.array([3, 1, 3, 2])
    assert cluster_reference(labels).tolist() == [3, 1, 3, 2]
    assert cluster_reference(labels[:, None]).tolist() == [3, 1, 3, 2]
    r = np.random.default_rng(0).normal(size=50)
    scaled = (r - r.min()) / (r.max() - r.min())
    expected = np.digitize(scaled, np.linspace(0, 1, 6)[:-1])
    assert cluster_reference(r, n_clusters=5).tolist() == expected.tolist()
    assert cluster_reference(torch.tensor(r)).max() == 10  # the maximum is in the last bin


# --------------------------------------------------------------------------- rank and entropy


@pytest.mark.parametrize("r", [1, 3, 7])
def test_effective_rank_of_rank_r_matrix_with_equal_singular_values(r):
    rng = np.random.default_rng(r)
    u, _ = np.linalg.qr(rng.normal(size=(50, r)))
    v, _ = np.linalg.qr(rng.normal(size=(20, r)))
    z = 3.0 * u @ v.T  # 50 x 20, rank r, all nonzero singular values 3
    assert float(effective_rank(z)) == pytest.approx(r, abs=1e-6)
    # centred variant: build a centred cloud (columns of u orthogonal to the ones vector)
    u_c = u - u.mean(axis=0)
    u_c, _ = np.linalg.qr(u_c)
    z_c = u_c @ v.T + 0.05  # a constant offset adds one direction unless centred
    assert float(effective_rank(z_c, center=True)) == pytest.approx(r, abs=1e-6)
    assert float(effective_rank(z_c)) > r + 0.1


def test_effective_rank_bounds_and_zero_matrix():
    z = np.random.default_rng(0).normal(size=(40, 10))
    e = float(effective_rank(z))
    assert 1.0 <= e <= 10.0
    assert float(effective_rank(np.zeros((5, 3)))) == 0.0


def test_von_neumann_entropy_closed_forms():
    rng = np.random.default_rng(0)
    r = 4
    u = rng.normal(size=(60, r))
    u -= u.mean(axis=0)
    u, _ = np.linalg.qr(u)  # centred, orthonormal columns: equal covariance eigenvalues
    v, _ = np.linalg.qr(rng.normal(size=(12, r)))
    z = 10.0 * u @ v.T
    assert float(von_neumann_entropy(z)) == pytest.approx(math.log(r), abs=1e-6)
    assert float(von_neumann_entropy(z, base=2)) == pytest.approx(2.0, abs=1e-6)
    # the recipe, in numpy, on a generic cloud; and d > n through the smaller Gram matrix
    for shape in [(80, 12), (10, 30)]:
        x = rng.normal(size=shape) * np.linspace(1, 3, shape[1])
        xc = x - x.mean(axis=0)
        s = xc.T @ xc / (shape[0] - 1) + 1e-8 * np.eye(shape[1])
        lam = np.linalg.eigvalsh(s / np.trace(s))
        lam = lam[lam > 0]
        assert float(von_neumann_entropy(x)) == pytest.approx(-(lam * np.log(lam)).sum(), abs=1e-9)


def test_alpha_req_recovers_power_law_exponent():
    rng = np.random.default_rng(0)
    d, n = 120, 400
    lam = np.arange(1, d + 1) ** -1.3
    u = rng.normal(size=(n, d))
    u -= u.mean(axis=0)
    u, _ = np.linalg.qr(u)
    z = u * np.sqrt((n - 1) * lam)  # covariance eigenvalues exactly lam
    alpha, r2 = alpha_req(z, return_r2=True)
    assert float(alpha) == pytest.approx(1.3, abs=1e-9)
    assert float(r2) == pytest.approx(1.0, abs=1e-9)
    assert float(alpha_req(z)) == pytest.approx(1.3, abs=1e-9)
    # a spectrum that is not a power law fits worse
    bent = np.where(np.arange(d) < 30, lam, lam * np.exp(-(np.arange(d) - 30) / 5.0))
    _, r2_bent = alpha_req(u * np.sqrt((n - 1) * bent), return_r2=True)
    assert float(r2_bent) < 0.95


def test_rank_and_entropy_invariances():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(200, 15)) * np.linspace(0.2, 4, 15)
    q, _ = np.linalg.qr(rng.normal(size=(15, 15)))
    perm = rng.permutation(200)
    for fn in (effective_rank, von_neumann_entropy, alpha_req):
        kw = {"fit_range": (2, 15)} if fn is alpha_req else {}
        v = float(fn(z, **kw))
        assert float(fn(z @ q, **kw)) == pytest.approx(v, rel=1e-9), fn.__name__
        assert float(fn(z[perm], **kw)) == pytest.approx(v, rel=1e-9), fn.__name__


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "fn",
    [
        diffusion_spectral_entropy,
        effective_rank,
        von_neumann_entropy,
        alpha_req,
        median_sigma,
        lambda z: diffusion_spectral_mutual_information(z, np.zeros(len(z), dtype=int)),
    ],
    ids=["dse", "erank", "vne", "alpha", "median_sigma", "dsmi"],
)
def test_bad_z_raises_value_error_naming_it(fn):
    z = np.random.default_rng(0).normal(size=(20, 3))
    z_nan = z.copy()
    z_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"^z: .*NaN"):
        fn(z_nan)
    with pytest.raises(ValueError, match=r"^z: .*at least 2"):
        fn(z[:1])
    with pytest.raises(ValueError, match=r"^z: .*3-D"):
        fn(z.reshape(20, 3, 1))


def test_bad_options_raise_value_error_naming_them():
    z, y = blobs(n=40, d=4)
    with pytest.raises(ValueError, match="reference"):
        diffusion_spectral_mutual_information(z, y[:-1])
    with pytest.raises(ValueError, match="clusters"):
        diffusion_spectral_mutual_information(z, clusters=y[:-1])
    with pytest.raises(ValueError, match="reference"):
        diffusion_spectral_mutual_information(z)
    with pytest.raises(ValueError, match="reference"):
        diffusion_spectral_mutual_information(z, np.full(40, 2.5))  # constant: cannot bin
    with pytest.raises(ValueError, match="reference"):
        diffusion_spectral_mutual_information(z, np.where(y > 3, np.nan, 1.0))
    with pytest.raises(ValueError, match="sigma"):
        diffusion_spectral_entropy(z, sigma=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        diffusion_spectral_entropy(z, sigma="mean")
    with pytest.raises(ValueError, match="max_n"):
        diffusion_spectral_entropy(z, max_n=1)
    with pytest.raises(ValueError, match="t: "):
        diffusion_spectral_entropy(z, t=0)
    with pytest.raises(ValueError, match="dtype"):
        diffusion_spectral_entropy(z, dtype=torch.float16)
    with pytest.raises(ValueError, match="base"):
        diffusion_spectral_entropy(z, base=1)
    with pytest.raises(ValueError, match="repetitions"):
        diffusion_spectral_mutual_information(z, y, repetitions=0)
    with pytest.raises(ValueError, match="fit_range"):
        alpha_req(z, fit_range=(5, 100))  # only 4 eigenvalues
    with pytest.raises(ValueError, match="fit_range"):
        alpha_req(z, fit_range=(3, 4))


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", DEVICES)
def test_results_on_input_device_and_equal_to_cpu(device):
    x, y = blobs(n=300, d=16)
    xt = torch.tensor(x, device=device)
    yt = torch.tensor(y, device=device)
    cases = {
        "dse": (diffusion_spectral_entropy, (xt,), {}),
        "dse_sub_median": (diffusion_spectral_entropy, (xt,), {"max_n": 250, "sigma": "median"}),
        "dse_f32": (diffusion_spectral_entropy, (xt,), {"dtype": torch.float32}),
        "dse_topk": (diffusion_spectral_entropy, (xt,), {"top_k": 60}),
        "dsmi": (diffusion_spectral_mutual_information, (xt, yt), {}),
        "dsmi_float_ref": (diffusion_spectral_mutual_information, (xt, xt[:, 0]), {}),
        "erank": (effective_rank, (xt,), {}),
        "vne": (von_neumann_entropy, (xt,), {}),
        "alpha": (alpha_req, (xt,), {"fit_range": (1, 16)}),
        "median_sigma": (median_sigma, (xt,), {}),
    }
    for name, (fn, args, kw) in cases.items():
        out = fn(*args, **kw)
        assert out.device.type == torch.device(device).type, name
        assert out.ndim == 0, name
        cpu = fn(*(a.cpu() for a in args), **kw)
        tol = 1e-4 if name in ("dse_f32", "dse_topk") else 1e-9
        assert float(out) == pytest.approx(float(cpu), abs=tol), name
