import pytest

from cyphercat.config import load_spec, spec_from_dict
from cyphercat.errors import CyphercatError


def test_default_spec_is_digits_and_hash_is_stable():
    a, b = load_spec(), load_spec()
    assert a.dataset.name == "digits"
    assert a.hash() == b.hash() and len(a.hash()) == 16
    assert spec_from_dict({"seed": 1}).hash() != a.hash()


def test_shorthand_and_frozen():
    s = spec_from_dict({"attacks": ["loss", {"name": "ml_leaks_1", "params": {"top_k": 2}}]})
    assert [a.name for a in s.attacks] == ["loss", "ml_leaks_1"]
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        s.seed = 3


@pytest.mark.parametrize("data, field", [
    ({"datset": {"name": "digits"}}, "datset"),
    ({"dataset": {"name": "digitz"}}, "dataset.name"),
    ({"attacks": ["nope"]}, "attacks[0].name"),
    ({"target": {"model": {"name": "mlpp"}}}, "target.model.name"),
    ({"defenses": ["nope"]}, "defenses[0].name"),
    ({"seed": -1}, "seed"),
    ({"target": {"training": {"lr": float("nan")}}}, "target.training.lr"),
    ({"attacks": ["loss", "loss"]}, "attacks[1]"),
    ({"splits": {"target_members": "many"}}, "splits.target_members"),
])
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(CyphercatError) as err:
        spec_from_dict(data)
    assert str(err.value).startswith(field)
    assert "\n" not in str(err.value)


def test_malformed_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("seed: [1, 2\nattacks: loss\n")
    with pytest.raises(CyphercatError, match="malformed YAML"):
        load_spec(p)
    with pytest.raises(CyphercatError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    p.write_text("- just\n- a list\n")
    with pytest.raises(CyphercatError, match="mapping"):
        load_spec(p)


def test_yaml_is_safe_loaded(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("seed: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(CyphercatError, match="malformed YAML"):
        load_spec(p)


def test_example_specs_validate():
    from pathlib import Path

    for path in sorted(Path(__file__).parent.parent.glob("examples/*.yaml")):
        load_spec(path)
