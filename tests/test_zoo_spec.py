import pytest

from mnv3compile.errors import UserError
from mnv3compile.zoo import build_spec, make_divisible


@pytest.mark.parametrize("value, expected", [(16 * 0.35, 8), (12, 16), (18, 24), (60, 64), (72 * 0.75, 56), (1280, 1280)])
def test_make_divisible_rounds_to_eight_never_below_ninety_percent(value, expected):
    assert make_divisible(value) == expected


def test_large_table_matches_paper():
    spec = build_spec("large")
    assert [(b.kernel, b.expand_ch, b.out_ch, bool(b.se_ch), b.act, b.stride) for b in spec.blocks][:4] == [
        (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2),
        (3, 72, 24, False, "relu", 1), (5, 72, 40, True, "relu", 2)]
    assert [b.expand_ch for b in spec.blocks] == [16, 64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]
    assert [b.se_ch for b in spec.blocks if b.se_ch] == [24, 32, 32, 120, 168, 168, 240, 240]
    assert (spec.stem_ch, spec.last_conv_ch, spec.last_ch) == (16, 960, 1280)


def test_small_table_matches_paper():
    spec = build_spec("small")
    assert [b.expand_ch for b in spec.blocks] == [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576]
    assert [b.out_ch for b in spec.blocks] == [16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96]
    assert [b.kernel for b in spec.blocks] == [3, 3, 3] + [5] * 8
    assert (spec.last_conv_ch, spec.last_ch) == (576, 1024)


def test_minimal_has_no_se_no_hswish_only_3x3():
    spec = build_spec("large-minimal")
    assert all(b.kernel == 3 and b.se_ch == 0 and b.act == "relu" for b in spec.blocks)
    assert spec.head_act == "relu"


def test_lraspp_dilates_and_halves_the_last_stage():
    spec = build_spec("lraspp-large")
    tail = spec.blocks[12:]
    assert all(b.dilation == 2 and b.stride == 1 for b in tail)
    assert [b.out_ch for b in tail] == [80, 80, 80] and spec.last_conv_ch == 480
    assert spec.low_level_index == 4 and spec.blocks[3].out_ch == 40  # the stride-8 skip
    assert build_spec("lraspp-large", reduced_tail=False).last_conv_ch == 960
    assert build_spec("lraspp-small").low_level_index == 2
    assert build_spec("lraspp-small").num_classes == 19


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="medium"), "unknown model 'medium'; choose one of: large, small, large-minimal, "
                           "small-minimal, lraspp-large, lraspp-small, ssdlite-large, ssdlite-small"),
    (dict(model="large", width=0.0), "width multiplier must be > 0, got 0.0"),
    (dict(model="large", width=-1.0), "width multiplier must be > 0, got -1.0"),
    (dict(model="large", resolution=100), "resolution 100: each side of large must be a multiple of 32 between 32 "
                                          "and 4096"),
    (dict(model="large", resolution="512x1000"), "resolution 512x1000: each side of large must be a multiple of 32 "
                                                 "between 32 and 4096"),
    (dict(model="lraspp-small", resolution="0x512"), "resolution 0x512: each side of lraspp-small must be a multiple "
                                                     "of 16 between 32 and 4096"),
    (dict(model="lraspp-large", resolution=4112), "resolution 4112: each side of lraspp-large must be a multiple of 16 "
                                                  "between 32 and 4096"),
    (dict(model="small", resolution="224x"), "resolution takes H or HxW (height x width, e.g. 224 or 512x1024), got "
                                             "'224x'"),
    (dict(model="small", resolution="2x2x2"), "resolution takes H or HxW (height x width, e.g. 224 or 512x1024), got "
                                              "'2x2x2'"),
    (dict(model="small", num_classes=0), "number of classes of small must be >= 1, got 0"),
    (dict(model="ssdlite-small", num_classes=1), "number of classes of ssdlite-small must be >= 2, got 1"),
])
def test_bad_spec_is_one_clear_error(kwargs, message):
    with pytest.raises(UserError) as info:
        build_spec(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("model, resolution, shape", [
    ("large", "224", (1, 3, 224, 224)), ("small", 64, (1, 3, 64, 64)), ("small", "96x160", (1, 3, 96, 160)),
    ("lraspp-small", "1024x2048", (1, 3, 1024, 2048)), ("lraspp-large", "48x80", (1, 3, 48, 80)),
])
def test_any_size_the_strides_allow(model, resolution, shape):
    spec = build_spec(model, 1.0, resolution)
    assert spec.input_shape == shape
    assert spec.output_shape == ((1, 19, *shape[2:]) if model.startswith("lraspp") else (1, 1000))
