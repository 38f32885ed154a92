import numpy as np
import pytest
import torch

from cyphercat.config import SplitSpec
from cyphercat.data.splits import membership_matrix, plan_splits
from cyphercat.errors import CyphercatError
from cyphercat.seeding import Seeds, torch_rng


def test_seeds_are_stable_and_role_specific():
    s = Seeds(7)
    assert s.int("reference", 3) == Seeds(7).int("reference", 3)
    assert s.int("reference", 3) != s.int("reference", 4) != s.int("target")
    assert (s.numpy("split").random(5) == Seeds(7).numpy("split").random(5)).all()


def test_torch_rng_restores_global_state():
    before = torch.random.get_rng_state()
    with torch_rng(123):
        a = torch.rand(3)
    with torch_rng(123):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(before, torch.random.get_rng_state())


def test_library_never_touches_numpy_global_rng():
    # this test inspects the legacy global generator on purpose
    np.random.seed(5)  # noqa: NPY002
    expected = np.random.random()  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    plan_splits(1500, SplitSpec(), Seeds(0).numpy("split"))
    membership_matrix(8, 600, Seeds(0).numpy("m"))
    assert np.random.random() == expected  # noqa: NPY002


def test_splits_are_disjoint_and_seeded():
    plan = plan_splits(1797, SplitSpec(validation=50), Seeds(0).numpy("split"))
    parts = plan.as_dict()
    allidx = np.concatenate(list(parts.values()))
    assert len(allidx) == len(set(allidx.tolist())) == 1797
    assert len(plan.members) == 300 and len(plan.validation) == 50 and len(plan.population) == 1797 - 1250
    again = plan_splits(1797, SplitSpec(validation=50), Seeds(0).numpy("split"))
    assert all((parts[k] == again.as_dict()[k]).all() for k in parts)


def test_defender_split_is_carved_only_when_a_defense_needs_it():
    n, spec = 1797, SplitSpec(validation=50)
    plain = plan_splits(n, spec, Seeds(0).numpy("split"))
    assert len(plain.defender) == 0
    defended = plan_splits(n, spec, Seeds(0).numpy("split"), needs_defender=True)
    left = n - 1250
    assert len(defended.defender) == left // 2 and len(defended.population) == left - left // 2
    parts = defended.as_dict()
    allidx = np.concatenate(list(parts.values()))
    assert len(allidx) == len(set(allidx.tolist())) == n
    for k in ("members", "nonmembers", "shadow_in", "shadow_out", "validation"):  # the other roles stay put
        assert (parts[k] == plain.as_dict()[k]).all()
    # explicit sizes win; an explicit population leaves the defender what is left
    sized = plan_splits(n, spec.model_copy(update={"defender": 100}), Seeds(0).numpy("split"))
    assert len(sized.defender) == 100 and len(sized.population) == left - 100
    capped = plan_splits(n, spec.model_copy(update={"population": 200}), Seeds(0).numpy("split"),
                         needs_defender=True)
    assert len(capped.population) == 200 and len(capped.defender) == left - 200
    with pytest.raises(CyphercatError, match="defender 600"):
        plan_splits(n, spec.model_copy(update={"defender": 600}), Seeds(0).numpy("split"))


def test_impossible_splits_error():
    with pytest.raises(CyphercatError, match="splits"):
        plan_splits(500, SplitSpec(), Seeds(0).numpy("split"))


def test_membership_matrix_pairs():
    m = membership_matrix(6, 101, np.random.default_rng(0))
    assert (m.sum(axis=0) == 3).all()
    assert not (m[0] & m[1]).any() and (m[0] | m[1]).all()
    with pytest.raises(CyphercatError, match="odd"):
        membership_matrix(5, 100, np.random.default_rng(0))
    with pytest.raises(CyphercatError, match="too small"):
        membership_matrix(2, 3, np.random.default_rng(0))
