"""The reference counts of mission.md: parameters exact, MAdds against the paper."""

import pytest

from mnv3compile.analysis import analyze
from mnv3compile.zoo import build_model, build_spec

# (model, width, exact params or None, paper MAdds in millions, tolerance)
REFERENCE = [
    ("large", 1.0, 5_483_032, 217, 0.02),
    ("small", 1.0, 2_542_856, 57, 0.02),
    ("large", 0.75, None, 155, 0.05),
    ("small", 0.75, None, 44, 0.05),
]


@pytest.mark.parametrize("model, width, params, madds, tolerance", REFERENCE)
def test_params_and_madds_match_the_paper(model, width, params, madds, tolerance):
    stats = analyze(build_model(build_spec(model, width, 224)))
    if params is not None:
        assert stats.total_params == params
    assert abs(stats.total_madds / 1e6 - madds) <= tolerance * madds, stats.total_madds


def test_paper_keeps_the_classifier_hidden_layer_full_width_below_one():
    # The paper's parameter column: Large 0.75 has 4.0 M parameters.
    stats = analyze(build_model(build_spec("large", 0.75, 224)))
    assert abs(stats.total_params / 1e6 - 4.0) < 0.05
