"""The ``compare`` and ``model fit|predict`` subcommands of ``hpcopt``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from hpcopt.errors import UsageError
from hpcopt.specs import plural

__all__ = ["add_subparser"]

DEFAULT_PREDICT_SIZES = "8,1K,64K,1M,16M,256M,1G"


def _positive(what: str, value: float | None, *, zero: bool = False) -> None:
    """UsageError unless ``value`` is missing or a finite number > 0 (>= 0 with ``zero``)."""
    if value is None:
        return
    if not math.isfinite(value) or not (value >= 0 if zero else value > 0):
        raise UsageError(
            f"{what} must be a finite number {'>= 0' if zero else '> 0'}, got {value:g}"
        )


def cmd_compare(args: argparse.Namespace) -> int:
    """Line up the same measurements (and training runs) across logs."""
    from hpcopt.analysis.compare import (
        compare_logs,
        compare_table,
        compare_train,
        labels_of,
        plot_compare,
        train_table,
    )
    from hpcopt.analysis.text import to_json
    from hpcopt.log import read_log

    if len(args.files) < 2:
        raise UsageError("compare needs at least two logs")
    _positive("--min-effect", args.min_effect, zero=True)
    logs = [read_log(f) for f in args.files]
    rows, labels = compare_logs(logs, args.min_effect), labels_of(logs)
    trained = compare_train(logs)
    if args.format == "json":
        print(to_json(rows + trained))
    else:
        tables = ([compare_table(rows, labels)] if rows or not trained else []) + (
            [train_table(trained, labels)] if trained else []
        )
        print("\n\n".join(tables))
    if args.plot:
        for path in plot_compare(rows, labels, Path(args.plot)):
            print(f"# wrote {path}", file=sys.stderr)
    return 0


def _fit_tables(fits: Any) -> str:
    from hpcopt.analysis.text import fmt_num, text_table

    head = ["name", "form", "ranks", "alpha(us)", "beta(GB/s)", "gamma(GB/s)", "R2", "med|err|%"]
    head.append("max|err|%")
    out = []
    sections = (
        ("links: Hockney t = alpha + n*beta", fits.links),
        ("collective fits: closed form per algorithm", fits.algorithms),
        ("collectives predicted from the p2p link (pingpong) alpha, beta", fits.predictions),
    )
    for title, group in sections:
        if not group:
            continue
        recs = [f.record() for f in group]
        body = [
            [r["name"], r["form"], ",".join(map(str, r["ranks"])), fmt_num(r["alpha_us"], ".2f"),
             fmt_num(r["beta_GBps"], ".3f"), fmt_num(r["gamma_GBps"], ".3f"),
             fmt_num(r["r2"], ".3f"), fmt_num(r["median_abs_rel_error"], ".1f", 100),
             fmt_num(r["max_abs_rel_error"], ".1f", 100)]
            for r in recs
        ]  # fmt: skip
        out += [f"# {title} (stat {fits.stat})", text_table(head, body)]
        notes: dict[str, list[str]] = {}
        for r in recs:
            if r["note"]:
                notes.setdefault(r["note"], []).append(r["name"])
        out += [f"# note ({', '.join(names)}): {note}" for note, names in notes.items()]
        sizes = sorted({(e["ranks"], e["size_bytes"]) for r in recs for e in r["pred_error"]})
        errs = {(r["name"], e["ranks"], e["size_bytes"]): e["rel_error"] for r in recs
                for e in r["pred_error"]}  # fmt: skip
        body = [
            [str(n), str(p), *(fmt_num(errs.get((r["name"], p, n)), "+.1f", 100) for r in recs)]
            for p, n in sizes
        ]
        out += ["# (predicted - measured) / measured, %", text_table(["size(B)", "ranks"] +
                [r["name"] for r in recs], body), ""]  # fmt: skip
    return "\n".join(out) if out else "(no p2p or collective records with two or more sizes)"


def _joined(paths: list[str]) -> Any:
    """The runs of several logs as one (e.g. a p2p log and an allreduce log)."""
    from hpcopt.log import Log, read_log

    logs = [read_log(p) for p in paths]
    return Log(
        logs[0].path, [run for log in logs for run in log.runs], any(g.partial for g in logs)
    )


def cmd_model_fit(args: argparse.Namespace) -> int:
    """Fit α, β, γ to a log's p2p and collective records."""
    from hpcopt.analysis.fits import fit_log
    from hpcopt.analysis.text import to_json

    _positive("--gamma", args.gamma)
    fits = fit_log(_joined(args.files), args.stat, args.gamma)
    print(to_json(fits.records()) if args.format == "json" else _fit_tables(fits))
    return 0


def _link_from(paths: list[str], stat: str) -> tuple[float, float, float | None]:
    """(α s, β s/B, γ s/B or None) from the first p2p link (pingpong preferred) of logs."""
    from hpcopt.analysis.fits import fit_log

    fits = fit_log(_joined(paths), stat)
    links = sorted(fits.links, key=lambda f: not f.name.endswith("pingpong"))
    if not links or links[0].beta_s is None:
        raise UsageError("no p2p records to take alpha and beta from; pass --alpha --beta")
    gamma = next((f.gamma_s for f in fits.predictions if f.gamma_s), None)
    return links[0].alpha_s, links[0].beta_s, gamma


def _compress_records(paths: list[str]) -> list[dict[str, Any]]:
    from hpcopt.log import read_log

    return [r for p in paths for r in read_log(p).records() if r.get("kernel") == "compress"]


def _predict_text(rows: list[dict[str, Any]], even: list[dict[str, Any]], note: str) -> str:
    from hpcopt.analysis.predict import schemes
    from hpcopt.analysis.text import fmt_num, text_table

    kernel = rows[0]["kernel"]
    names = schemes(kernel)
    head = ["size(B)", *(f"{s}(us)" for s in names), "bound(us)", "best"]
    body = [
        [str(r["size_bytes"]), *(fmt_num(r[f"{s}_s"], ".4g", 1e6) for s in names),
         fmt_num(r["lower_bound_s"], ".4g", 1e6), r["best"]]
        for r in rows
    ]  # fmt: skip
    out = [f"# predicted {kernel} times at {plural(rows[0]['ranks'], 'rank')}; {note}"]
    out.append(text_table(head, body))
    if even:
        out += ["", "# encoders: compression is faster on links slower than pays_below"]
        body = [
            [str(r["encoder"]), str(r["size_bytes"]), fmt_num(r["ratio"], ".1f"), r["scheme"],
             fmt_num(r["pays_below_GBps"], ".3g")]
            for r in even
        ]  # fmt: skip
        head = ["encoder", "size(B)", "ratio", "scheme", "pays_below(GB/s)"]
        out.append(text_table(head, body))
    return "\n".join(out)


def cmd_model_predict(args: argparse.Namespace) -> int:
    """Predict a collective's times at any scale, and where encoders pay off."""
    from hpcopt.analysis.predict import break_even_table, predict_table
    from hpcopt.analysis.text import to_json
    from hpcopt.specs import parse_size

    if args.ranks < 1:
        raise UsageError(f"--ranks must be >= 1, got {args.ranks}")
    _positive("--alpha", args.alpha, zero=True)
    _positive("--beta", args.beta)
    _positive("--gamma", args.gamma)
    alpha = args.alpha * 1e-6 if args.alpha is not None else None
    beta = 1 / (args.beta * 1e9) if args.beta is not None else None
    gamma = 1 / (args.gamma * 1e9) if args.gamma is not None else None
    if (alpha is None or beta is None) and args.source:
        a, b, g = _link_from(args.source, args.stat)
        alpha = a if alpha is None else alpha
        beta = b if beta is None else beta
        gamma = g if gamma is None else gamma
    if alpha is None or beta is None:
        raise UsageError("need --alpha and --beta (or --from a log with p2p records)")
    note = "gamma ignored (0)" if gamma is None else f"gamma {1 / (gamma * 1e9):.3g} GB/s"
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes:
        raise UsageError("--sizes is empty")
    rows = predict_table(args.ranks, sizes, alpha, beta, gamma or 0.0, args.kernel)
    sources = [*(args.source or []), *(args.encoders or [])]
    even = break_even_table(_compress_records(sources), args.ranks, alpha, gamma or 0.0)
    note = f"alpha {alpha * 1e6:.3g} us, beta {1 / (beta * 1e9):.3g} GB/s, {note}"
    if args.format == "json":
        recs = [{"kind": "predict", **r} for r in rows] + [
            {"kind": "break_even", **r} for r in even
        ]
        print(to_json(recs))
    else:
        print(_predict_text(rows, even, note))
    return 0


def add_subparser(sub: Any) -> None:
    """Register ``compare`` and ``model`` on the ``hpcopt`` parser."""
    from hpcopt.analysis.fits import STATS
    from hpcopt.collectives import COLLECTIVES

    cmp = sub.add_parser("compare", help="line up the same measurements across logs")
    cmp.add_argument("files", nargs="+", help="two or more .h5 logs; ratios are to the first")
    cmp.add_argument("--format", default="table", choices=("table", "json"))
    cmp.add_argument("--plot", metavar="DIR", help="also write compare_KERNEL.png/.svg to DIR")
    cmp.add_argument(
        "--min-effect", type=float, default=0.10, metavar="FRACTION",
        help="smallest difference of median times that a verdict may claim, beyond the 95 %% "
        "bootstrap interval (default 0.10)",
    )  # fmt: skip
    cmp.set_defaults(func=cmd_compare)

    model = sub.add_parser("model", help="alpha-beta-gamma cost models: fit and predict")
    msub = model.add_subparsers(dest="model_command", required=True, parser_class=type(model))
    fit = msub.add_parser(
        "fit", help="fit alpha, beta, gamma to a log's p2p and collective records"
    )
    fit.add_argument("files", nargs="+", help=".h5 logs, fitted together (p2p and collectives)")
    fit.add_argument("--format", default="table", choices=("table", "json"))
    fit.add_argument("--stat", default="avg", choices=tuple(STATS), help="which time to fit")
    fit.add_argument("--gamma", type=float, help="reduction GB/s for predictions (default: fit)")
    fit.set_defaults(func=cmd_model_fit)

    pred = msub.add_parser("predict", help="collective times at any scale; encoder break-even")
    pred.add_argument("--ranks", type=int, required=True, help="rank count p")
    pred.add_argument(
        "--kernel",
        default="allreduce",
        choices=tuple(COLLECTIVES),
        help="the operation whose algorithms to predict (default allreduce)",
    )
    pred.add_argument("--alpha", type=float, help="latency per message (us)")
    pred.add_argument("--beta", type=float, help="link bandwidth (GB/s)")
    pred.add_argument("--gamma", type=float, help="local reduction throughput (GB/s)")
    pred.add_argument(
        "--from", dest="source", nargs="+", metavar="FILE", help="logs to fit alpha/beta/gamma from"
    )
    pred.add_argument("--encoders", nargs="+", metavar="FILE", help="logs with compress records")
    pred.add_argument("--sizes", default=DEFAULT_PREDICT_SIZES, help="comma list of sizes")
    pred.add_argument("--stat", default="avg", choices=tuple(STATS), help="time used by --from")
    pred.add_argument("--format", default="table", choices=("table", "json"))
    pred.set_defaults(func=cmd_model_predict)
