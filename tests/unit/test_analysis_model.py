"""Cost models: closed forms, fits that recover known α, β, γ, predictions, break-even."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from analysis_synth import (
    ALPHA,
    BETA,
    GAMMA,
    SIZES,
    compress_runs,
    model_runs,
    timed,
    write_log,
)

from hpcopt.analysis.fits import fit_log
from hpcopt.analysis.model import coefficients, fit_linear, lower_bound, predict
from hpcopt.analysis.predict import break_even, link_break_even, predict_table
from hpcopt.cli import main
from hpcopt.log import read_log

A, B, G = 3e-6, 1 / 2e9, 1 / 6e9


@pytest.mark.parametrize("p", [2, 4, 8, 64, 1024])
@pytest.mark.parametrize("n", [8, 1 << 20, 1 << 30])
def test_closed_forms_are_the_reference_formulas(p: int, n: int) -> None:
    lg = math.log2(p)
    share = (p - 1) / p
    assert predict("ring", p, n, A, B, G) == pytest.approx(
        2 * (p - 1) * A + 2 * share * n * B + share * n * G, rel=1e-12
    )
    assert predict("recursive-doubling", p, n, A, B, G) == pytest.approx(
        lg * (A + n * B + n * G), rel=1e-12
    )
    assert predict("tree", p, n, A, B, G) == pytest.approx(
        2 * lg * A + 2 * n * lg * B + n * lg * G, rel=1e-12
    )
    assert predict("rabenseifner", p, n, A, B, G) == pytest.approx(
        2 * lg * A + 2 * share * n * B + share * n * G, rel=1e-12
    )
    assert lower_bound(p, n, A, B) == pytest.approx(math.ceil(lg) * A + 2 * share * n * B)


def test_non_powers_of_two_pay_for_folding() -> None:
    assert coefficients("recursive-doubling", 6, 100) == (4.0, 400.0, 300.0)
    assert predict("rabenseifner", 6, 8, A, B, G) > predict("rabenseifner", 4, 8, A, B, G)
    assert predict("tree", 5, 8, A, B, G) == pytest.approx(6 * A + 48 * B + 24 * G)


def test_predict_table_reproduces_closed_forms_at_scale() -> None:
    rows = predict_table(1024, [8, 1 << 30], A, B, G)
    assert rows[0]["ring_s"] == predict("ring", 1024, 8, A, B, G)
    assert rows[0]["best"] == "recursive-doubling" and rows[1]["best"] in ("ring", "rabenseifner")
    assert rows[1]["lower_bound_s"] == lower_bound(1024, 1 << 30, A, B)


def test_exact_data_is_fitted_exactly() -> None:
    samples = [
        (p, n, predict("recursive-doubling", p, n, A, B, G)) for p in (2, 3, 8) for n in SIZES
    ]
    fit = fit_linear("x", "recursive-doubling", samples)
    assert fit.alpha_s == pytest.approx(A, rel=1e-9)
    assert fit.beta_s == pytest.approx(B, rel=1e-9) and fit.gamma_s == pytest.approx(G, rel=1e-9)
    assert (
        fit.r2 == pytest.approx(1.0) and max(abs(e["rel_error"]) for e in fit.pred_error()) < 1e-9
    )


def test_noisy_fits_recover_alpha_beta_gamma_within_two_percent(tmp_path: Path) -> None:
    runs = model_runs(["ring", "recursive-doubling", "tree"], [2, 3, 4, 8], noise=0.01, seed=1)
    fits = fit_log(read_log(write_log(tmp_path / "s.h5", runs)))
    (link,) = fits.links
    assert link.alpha_s == pytest.approx(ALPHA, rel=0.02)
    assert link.beta_s == pytest.approx(BETA, rel=0.02)
    by = {f.name: f for f in fits.algorithms}
    rd = by["syn/recursive-doubling"]  # non-powers of two separate beta from gamma
    assert (rd.alpha_s, rd.beta_s, rd.gamma_s) == pytest.approx((ALPHA, BETA, GAMMA), rel=0.02)
    ring = by["syn/ring"]  # ring's beta/gamma ratio is fixed: only their sum is identifiable
    assert ring.gamma_s is None and "not separable" in ring.note
    assert ring.alpha_s == pytest.approx(ALPHA, rel=0.02)
    assert ring.beta_s == pytest.approx(BETA + GAMMA / 2, rel=0.02)
    assert sorted(f.name for f in fits.predictions) == sorted(by)
    for pred in fits.predictions:
        assert pred.gamma_s == pytest.approx(GAMMA, rel=0.02)
        assert max(abs(e["rel_error"]) for e in pred.pred_error()) < 0.05


def test_gamma_is_recovered_when_beta_is_known() -> None:
    samples = [(p, n, predict("ring", p, n, A, B, G)) for p in (2, 4) for n in SIZES]
    fit = fit_linear("ring", "ring", samples, beta=B)
    assert (fit.alpha_s, fit.gamma_s) == pytest.approx((A, G), rel=1e-9)


@pytest.mark.parametrize("rounds", [0, 1, 2])
def test_break_even_equalizes_compressed_and_plain_time(rounds: int) -> None:
    p, n, m, enc, dec = 4, 1 << 24, 1 << 20, 2e-3, 1e-3
    beta = break_even(p, n, m, enc, dec, A, G, rounds)
    plain = predict("ring", p, n, A, beta, G)
    if rounds:
        packed = enc + predict("ring", p, m, A, beta, G) + (rounds - 1) * 2 * (p - 1) * A + dec
    else:
        packed = enc + (p - 1) * A + (p - 1) * m * beta + p * dec  # decode covers the sum
    assert packed == pytest.approx(plain, rel=1e-9)


def test_link_break_even_from_measured_times() -> None:
    """T = T0 + wire·β on both sides: equal times at the reported bandwidth."""
    beta = 1 / 2e9
    ring, squeezed = (0.010, 16 << 20), (0.030, 1 << 19)
    pays = link_break_even(*squeezed, *ring, beta)
    b = 1 / (pays * 1e9)
    at = [t - w * beta + w * b for t, w in (squeezed, ring)]
    assert at[0] == pytest.approx(at[1], rel=1e-9)
    assert link_break_even(0.001, 1 << 19, *ring, beta) == math.inf
    assert link_break_even(0.005, 16 << 20, *ring, beta) == 0.0


def test_allgather_never_pays_beyond_twice_the_ratio() -> None:
    assert break_even(64, 1 << 20, 1 << 16, 1e-3, 1e-3, A, G, rounds=0) == math.inf


def test_model_cli_fit_and_predict(tmp_path: Path, capsys) -> None:
    path = write_log(tmp_path / "s.h5", model_runs(["ring"], [2], noise=0.0) + compress_runs())
    assert main(["model", "fit", str(path), "--format", "json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    link = next(r for r in recs if r["kind"] == "link")
    assert link["alpha_us"] == pytest.approx(2.0) and link["beta_GBps"] == pytest.approx(5.0)
    assert all("pred_error" in r and "r2" in r for r in recs)
    assert main(["model", "fit", str(path)]) == 0
    assert "alpha(us)" in capsys.readouterr().out
    args = ["model", "predict", "--ranks", "1024", "--from", str(path), "--format", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    even = {r["encoder"]: r for r in out if r["kind"] == "break_even"}
    assert (
        even["fp16"]["scheme"] == "allreduce x1"
        and even["topk:ratio=0.01"]["scheme"] == "allgather"
    )
    assert even["topk:ratio=0.01"]["pays_below_GBps"] == 0  # 50x < 1024/2: never
    assert main(["model", "predict", "--ranks", "8", "--alpha", "2", "--beta", "5"]) == 0
    assert "rabenseifner(us)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["model", "predict", "--ranks", "0", "--alpha", "1", "--beta", "1"], "--ranks"),
        (["model", "predict", "--ranks", "4"], "--alpha and --beta"),
        (["model", "predict", "--ranks", "4", "--alpha", "1", "--beta", "0"], "--beta"),
        (
            ["model", "predict", "--ranks", "4", "--alpha", "1", "--beta", "1", "--sizes", "x"],
            "size",
        ),
        (["model", "fit", "/nonexistent.h5"], "no such file"),
        (["model"], "required"),
    ],
)
def test_model_cli_errors_are_one_line(args: list[str], message: str, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_fit_joins_separate_p2p_and_allreduce_logs(tmp_path: Path, capsys) -> None:
    runs = model_runs(["ring"], [2], noise=0.0)
    p2p = write_log(tmp_path / "p2p.h5", runs[:1])
    allreduce = write_log(tmp_path / "ar.h5", runs[1:])
    assert (
        main(["model", "fit", str(p2p), str(allreduce), "--stat", "min", "--format", "json"]) == 0
    )
    kinds = {r["kind"] for r in json.loads(capsys.readouterr().out)}
    assert kinds == {"link", "fit", "predicted"}


def test_fits_keep_encoders_apart(tmp_path: Path) -> None:
    """An uncompressed ring and an fp16 ring in one log are two fits, not one pooled fit."""
    meta = {"tag": "", "ranks": 4}
    fast = [timed("allreduce", "ring", 4, n, predict("ring", 4, n, A, B, G)) for n in SIZES]
    half = []
    for fields, arrays in fast:
        t = 3 * fields["t_avg_s"]
        half.append(({**fields, "encoder": "fp16", "t_avg_s": t, "t_p50_s": t}, arrays))
    fits = fit_log(read_log(write_log(tmp_path / "e.h5", [(meta, fast + half)])))
    by_name = {f.name: f for f in fits.algorithms}
    assert set(by_name) == {"ring", "ring[fp16]"}
    assert by_name["ring"].alpha_s == pytest.approx(A, rel=1e-6)
    assert by_name["ring[fp16]"].alpha_s == pytest.approx(3 * A, rel=1e-6)
    assert by_name["ring"].r2 > 0.999 and by_name["ring[fp16]"].r2 > 0.999


def test_every_registered_algorithm_brings_its_cost_form() -> None:
    """Nothing is fitted as generic by omission: native and hierarchical say so themselves."""
    from hpcopt.collectives import ALLREDUCE, register
    from hpcopt.collectives.cost import CostForm

    for name in ALLREDUCE.names():
        assert isinstance(ALLREDUCE[name].info["cost"], CostForm), name
    with pytest.raises(TypeError):
        register("formless", lambda comm, buf, **kw: 0)  # type: ignore[call-arg]
    assert "formless" not in ALLREDUCE
