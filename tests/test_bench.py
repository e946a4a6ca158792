"""mnv3compile bench: interleaved latency of bundles and of onnxruntime on their models."""

import json
from collections import Counter

import pytest


@pytest.fixture(scope="module")
def tiny_int8_bundle(tmp_path_factory):
    from mnv3compile.pipeline import BuildRequest, build
    from mnv3compile.targets.presets import preset
    from mnv3compile.zoo import build_model, build_spec

    out = tmp_path_factory.mktemp("tiny") / "tiny-int8"
    build(BuildRequest(target=preset("host"), output=out, name="tiny",
                       model=build_model(build_spec("small-minimal", 0.35, 96)), quant="int8"))
    return out


@pytest.mark.slow
def test_bench_json_has_bundle_and_onnxruntime_rows_with_ratios(cli, tiny_int8_bundle):
    code, stdout, err = cli("bench", str(tiny_int8_bundle), "--vs-onnxruntime", "--runs", "12", "--cold-starts", "2",
                            "--json")
    assert code == 0, err
    report = json.loads(stdout)
    rows = {(r["kind"], r["detail"]): r for r in report["rows"]}
    assert set(rows) == {("bundle", "int8 integer host"), ("onnxruntime", "fp32"), ("onnxruntime", "int8 QDQ")}
    assert rows[("onnxruntime", "fp32")]["ratio"] == 1.0 and all(r["runs"] == 12 for r in rows.values())
    bundle = rows[("bundle", "int8 integer host")]
    assert bundle["p10_ms"] <= bundle["median_ms"] <= bundle["p90_ms"]
    assert report["threads"] == 1 and report["ratio_reference"].endswith("(fp32)")
    for row in rows.values():  # each contender's start, from two cold processes
        assert row["cold_starts"] == 2
        assert abs(row["first_result_ms"] - row["open_ms"] - row["first_run_ms"]) < 0.02
        assert 0 < row["model_mib"] < row["peak_mib"]


def test_a_contender_that_cannot_start_is_one_error(cli, tiny_int8_bundle, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_int8_bundle, broken)
    library = next(broken.glob("*.so"))
    library.unlink()
    code, _, err = cli("bench", str(broken), "--runs", "10")
    assert (code, err) == (2, f"error: bench: {broken}: ValueError: cannot find file {library}\n")


def test_bench_table_and_bad_bundle(cli, tiny_int8_bundle, tmp_path):
    code, stdout, _ = cli("bench", str(tiny_int8_bundle), "--runs", "10")
    assert code == 0 and "tiny-int8" in stdout and "1.00x" in stdout
    code, _, err = cli("bench", str(tmp_path), "--runs", "10")
    assert (code, err) == (2, f"error: {tmp_path} is not an mnv3compile bundle (no manifest); make one with "
                              "'mnv3compile build'\n")


def test_rounds_shuffle_so_every_contender_follows_every_other_alike():
    from mnv3compile.benchmark import WARMUP_CALLS, measure

    calls = []

    class Fake:
        def __init__(self, name):
            self.name, self.times_ms = name, []

        def timed_calls(self):
            calls.append(self.name)
            return [0.0]

    entries = [Fake("a"), Fake("b"), Fake("c")]
    measure(entries, runs=300, budget_s=60)
    timed = calls[3 * WARMUP_CALLS:]  # after the warm-up calls
    pairs = Counter((timed[i - 1], timed[i]) for i in range(1, len(timed)) if timed[i - 1] != timed[i])
    # A rotated (cyclic) order gives each contender always the same predecessor: c before a 299 times
    # of 300, b before a once. Shuffled rounds split them about evenly (150 each expected).
    for (before, after), count in pairs.items():
        assert count >= 100, (before, after, pairs)
    assert len(pairs) == 6
    assert [len(e.times_ms) for e in entries] == [300, 300, 300]
