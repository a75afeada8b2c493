"""Parameter validation: bad values give one clear error that names the parameter and what is allowed."""

import textwrap

import pytest

from replicate import params
from replicate.params import Param, ParameterError, validate


def test_validate_accepts_good_values_and_coerces_int_to_float():
    ns = validate({"PROFILE": "cpu", "N": 3, "LR": 1}, {"N": Param(int, min=1), "LR": Param(float, min=0.0)})
    assert ns.N == 3 and ns.LR == 1.0 and isinstance(ns.LR, float) and ns.PROFILE == "cpu"


@pytest.mark.parametrize(
    "namespace, spec, fragment",
    [
        ({"PROFILE": "gpu"}, {}, "PROFILE='gpu' is not allowed; choose one of ['smoke', 'cpu', 'full']"),
        ({"PROFILE": "cpu", "N": "10"}, {"N": Param(int)}, "N='10' has type str; expected int"),
        ({"PROFILE": "cpu", "N": True}, {"N": Param(int)}, "N=True has type bool; expected int"),
        ({"PROFILE": "cpu", "N": 0}, {"N": Param(int, min=1)}, "N=0 is too small; it must be >= 1"),
        ({"PROFILE": "cpu", "P": 1.5}, {"P": Param(float, max=1.0)}, "P=1.5 is too large; it must be <= 1.0"),
        ({"PROFILE": "cpu", "D": "f8"}, {"D": Param(str, choices=("float32", "bfloat16"))},
         "choose one of ['float32', 'bfloat16']"),
        ({"PROFILE": "cpu", "L": [1, -2]}, {"L": Param(list, item=Param(int, min=1))}, "L[1]=-2 is too small"),
        ({"PROFILE": "cpu", "L": []}, {"L": Param(list, item=Param(int))}, "parameter L is empty"),
        ({"PROFILE": "cpu"}, {"N": Param(int)}, "parameter N is not defined"),
    ],
)
def test_validate_rejects_with_actionable_message(namespace, spec, fragment):
    with pytest.raises(ParameterError) as err:
        validate(namespace, spec)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message  # one line


def test_params_file_layout_is_checked(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: cpu\nnotebooks:\n  x: {smoke: {}, cpu: {}}\n")
    with pytest.raises(ParameterError, match=r"notebooks.x must have exactly the profiles \['smoke', 'cpu', 'full'\]"):
        params.load_params_file(bad)
    bad.write_text("profile: laptop\nnotebooks: {}\n")
    with pytest.raises(ParameterError, match="profile='laptop' is not allowed"):
        params.load_params_file(bad)


def test_notebook_params_selects_profile_and_names_unknown_sections(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(
        textwrap.dedent(
            """\
            profile: cpu
            notebooks:
              a: {smoke: {N: 1}, cpu: {N: 2}, full: {N: 3}}
            """
        )
    )
    assert params.notebook_params("a", path=f) == {"N": 2, "PROFILE": "cpu"}
    assert params.notebook_params("a", "full", path=f) == {"N": 3, "PROFILE": "full"}
    with pytest.raises(ParameterError, match=r"no section notebooks.b; known: \['a'\]"):
        params.notebook_params("b", path=f)
