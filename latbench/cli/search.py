"""``latbench search`` and ``latbench validate``: latency-constrained search, checked by measurement."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from latbench.cli._app import console
from latbench.cli.options import (
    DEPLOYMENT,
    DEVICE,
    PROTOCOL,
    DeployOptions,
    ProtocolOptions,
    deploy_options,
    protocol_options,
)
from latbench.cli.predictors import FORCE_HELP, _note_forced, _parse_params, _workload_default, _workload_problems
from latbench.errors import LatbenchError

_METHODS = "random, candidate, fast, evolutionary, gradient (needs an mlp predictor) or nsga2."


def _progress(title: str) -> tuple[Any, Any]:
    from latbench.cli.profile import progress_bar

    return progress_bar(title, lambda best: f"best {best.latency_ms:.3g} ms, quality {best.quality:.4g}")


def _command_line(ctx: typer.Context) -> str:
    """The command as the user would type it again: every option that differs from its default."""
    import click

    parts = ["latbench", ctx.info_name or "search"]
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if value == p.default or value is None or value == [] or not p.opts:
            continue
        flag = max(p.opts, key=len)
        if isinstance(p, click.Option) and p.is_flag:
            if value is True:
                parts.append(flag)
            elif p.secondary_opts:
                parts.append(p.secondary_opts[0])
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            parts += [flag, str(v)]
    return " ".join(shlex.quote(x) for x in parts)


@deploy_options(
    typer.Option(None, "--device", help="Measure the reference on this target (cpu, cuda:N) instead of predicting it.")
)
@protocol_options
def search(
    ctx: typer.Context,
    predictor: Path | None = typer.Option(
        None,
        "--predictor",
        help="A predictor directory (from train-predictor). Default: the most recent under runs/ for the space's "
        "family, else a shipped one whose card holds on this machine and workload.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Directory for result.json, history.parquet (and pareto.*). Default: a fresh runs/search_NNN.",
    ),
    space: str = typer.Option(
        "bert", "--space", help="Preset (bert, vit, gpt), a space JSON file, or supernet:RUN (the run's space)."
    ),
    method: str = typer.Option("evolutionary", "--method", help=_METHODS),
    latency_constraint: float | None = typer.Option(
        None, "--latency-constraint", help="Speed-up over the space's reference: latency <= reference / X."
    ),
    latency_ms: float | None = typer.Option(None, "--latency-ms", help="An absolute bound in ms instead."),
    window: str | None = typer.Option(
        None, "--window", help="LOW,HIGH fractions of the target (default 0.85,1.1 for candidate/fast, else 0,1)."
    ),
    safety_margin: bool = typer.Option(
        False, "--safety-margin", help="Judge by the predictor's interval (its upper end under the bound)."
    ),
    quality: str = typer.Option("proxy", "--quality", help="proxy, supernet:RUN_DIR, or module:function."),
    budget: int = typer.Option(1000, "--budget", help="Architectures to evaluate at most."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same search."),
    param: list[str] = typer.Option([], "--param", help="KEY=VALUE setting of the searcher (repeatable)."),
    batch: int | None = typer.Option(None, "--batch", help="Batch size (default: the predictor's)."),
    seq: int | None = typer.Option(None, "--seq", help="Sequence length (default: the predictor's)."),
    reference_ms: float | None = typer.Option(
        None, "--reference-ms", help="The reference's latency in ms, measured elsewhere (instead of --device)."
    ),
    deployment: DeployOptions = DEPLOYMENT,
    protocol: ProtocolOptions = PROTOCOL,
    measure_top: int = typer.Option(
        0,
        "--measure-top",
        help="Measure K candidates near the bound with the reference (--device); keep the best that meets it measured.",
    ),
    measure_margin: float = typer.Option(
        0.0,
        "--measure-margin",
        help="With --measure-top: a candidate meets the bound as measured only this fraction under it "
        "(0.03 = 3%), room for the machine's drift between runs, so that --validate holds too.",
    ),
    validate: bool = typer.Option(
        False, "--validate", help="Then measure the result against the reference (--device)."
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Search a space for the best architecture under a latency constraint, predicted; write DIR.

    With a speed-up (--latency-constraint) and no --device or --reference-ms, the reference is measured
    on the predictor's device and deployment when that device is this machine.
    """
    from latbench import runs
    from latbench.io import check_dir_path
    from latbench.predictors.persist import load_predictor
    from latbench.search.constraint import Reference, parse_window
    from latbench.search.quality import get_quality
    from latbench.search.run import (
        check_reachable,
        default_window,
        deploy_validity,
        make_problem,
        measured_reference,
        run_search,
        write_outputs,
    )
    from latbench.space import get_space

    out = out if out is not None else runs.fresh_dir("search")
    check_dir_path(out, "--out")  # before the work, not after it
    device = deployment.device
    if (latency_constraint is None) == (latency_ms is None):
        raise LatbenchError("--latency-constraint", "give exactly one of --latency-constraint X and --latency-ms MS")
    if measure_top < 0:
        raise LatbenchError("--measure-top", f"must be >= 0, got {measure_top}")
    if device is not None and reference_ms is not None:
        raise LatbenchError(
            "--reference-ms", "give either --device (measure the reference) or --reference-ms, not both"
        )
    from latbench.search.run import check_measure_margin

    check_measure_margin(measure_margin)
    if measure_margin and not measure_top:
        raise LatbenchError(
            "--measure-margin", "applies to the candidates --measure-top measures: give --measure-top K"
        )
    if budget < 1:
        raise LatbenchError("--budget", f"must be >= 1, got {budget}")
    from latbench.search.base import get_searcher_class
    from latbench.search.quality import supernet_space

    sp = supernet_space(space.partition(":")[2]) if space.startswith("supernet:") else get_space(space)

    searcher_cls = get_searcher_class(method)
    config = _parse_params(param)
    searcher_cls.config_class.from_dict(config, f"--param ({method})")  # bad parameters fail before any work
    win = parse_window(window) or default_window(method)
    if predictor is None:
        predictor = runs.find_predictor(sp.family, batch, seq)
        console.print(f"predictor   {predictor}")
    pred = load_predictor(predictor)
    if pred.features is None or pred.features.kind != "arch":
        raise LatbenchError(
            "--predictor",
            f"{predictor} was trained on an imported table; a search needs one trained on architectures "
            "(a result store from latbench profile)",
        )
    b = _workload_default(pred, "batch", batch, "--batch") or 1
    s = None if sp.family == "vit" else _workload_default(pred, "seq_len", seq, "--seq")
    if sp.family != "vit" and s is None:
        raise LatbenchError("--seq", f"family {sp.family!r} needs a sequence length")
    if pred.validity is not None and pred.validity.family not in (None, sp.family):
        raise LatbenchError(
            "--predictor", f"the predictor is for {pred.validity.family} models, space {sp.name!r} is {sp.family}"
        )
    objective = get_quality(quality)
    check_space = getattr(objective, "check_space", None)
    if check_space is not None:
        check_space(sp)

    target: dict[str, object] = {}
    if device is None and reference_ms is None and latency_constraint is not None:
        target = runs.predictor_target(pred) or {}  # the predictor's device, when it is this machine
        device = target.pop("device", None)  # type: ignore[assignment]
    if validate and device is None:
        raise LatbenchError("--validate", "validation measures on a target: give --device")
    if measure_top and device is None:
        raise LatbenchError("--measure-top", "measures K candidates on a target: give --device")
    deploy = None
    if device is not None:
        deploy = deployment.config(b, s, device=device, **target)
        if pred.validity is not None:
            _note_forced(pred.validity.check(deploy_validity(deploy, sp.family), force, where="--predictor"))
    else:  # no target to compare with: the workload must still be one the predictor was trained on
        problems = _workload_problems(pred.validity, b, s)
        if problems and not force:
            flag = "--batch" if problems[0].startswith("batch") else "--seq"
            raise LatbenchError(flag, f"{problems[0]}; use --force to search anyway")
        _note_forced(problems)
    reference = None
    if reference_ms is not None:
        assert sp.reference is not None
        reference = Reference(sp.reference.to_json(), reference_ms, "given")
    elif deploy is not None:
        proto = protocol.config()
        console.print(f"measuring the reference ({sp.reference.describe()}) on {deploy.label()} ...")  # type: ignore[union-attr]
        reference = measured_reference(sp, deploy, proto, seed=seed)
    problem, reference = make_problem(
        sp,
        pred,
        objective,
        reference,
        speedup=latency_constraint,
        latency_ms=latency_ms,
        window=win,
        margin=safety_margin,
        batch=b,
        seq_len=s,
    )
    if reference.source == "predicted":
        typer.echo(
            "latbench: warning: the reference latency is predicted, not measured (the reference often lies outside "
            "the predictor's data); give --device to measure it on the target",
            err=True,
        )
    check_reachable(problem, seed=seed)
    if pred.validity is not None:  # the space's reach against the dimensions the predictor was trained on
        pairs = sp.attention_choices()
        heads, qk = [h for h, _ in pairs], [d for _, d in pairs]
        v = qk if sp.v_dim is None else [sp.v_dim.min, sp.v_dim.max]
        reach = {
            "hidden": [sp.hidden.min, sp.hidden.max],
            "layers": [sp.n_layers.min, sp.n_layers.max],
            "heads": [min(heads), max(heads)],
            "qk_dim": [min(qk), max(qk)],
            "v_dim": [min(v), max(v)],
            "mlp": [sp.mlp.min, sp.mlp.max],
        }
        for issue in pred.validity.dim_problems(reach, what=f"space {sp.name!r}"):
            typer.echo(f"latbench: warning: --predictor: {issue}", err=True)
    console.print(f"reference   {sp.reference.describe()}: {reference.latency_ms:.4g} ms ({reference.source})")  # type: ignore[union-attr]
    console.print(f"constraint  {problem.constraint.describe()}")
    progress, on_progress = _progress(method)
    with progress:
        outcome = run_search(problem, method, budget=budget, seed=seed, config=config, on_progress=on_progress)
    if measure_top:
        from latbench.cli.profile import progress_bar
        from latbench.search.run import choose_by_measurement

        assert deploy is not None
        proto = protocol.config()
        mprogress, mon_progress = progress_bar("measure")
        with mprogress:
            choice = choose_by_measurement(
                outcome,
                problem,
                deploy,
                proto,
                measure_top,
                seed=seed,
                on_progress=mon_progress,
                margin=measure_margin,
            )
        held = (
            f", held under {choice.limit_ms:.4g} ms by the {100 * choice.margin:.3g}% margin" if choice.margin else ""
        )
        console.print(
            f"measured    {len(choice.rows)} candidates with the reference ({choice.reference_ms:.4g} ms, "
            f"bound {choice.bound_ms:.4g} ms{held}): {sum(r['meets_constraint'] for r in choice.rows)} meet it"
        )
        if choice.chosen is None:
            fix = "a smaller --measure-margin, " if choice.margin else ""
            typer.echo(
                "latbench: warning: no measured candidate meets the constraint; the predicted best is kept "
                f"(the predictor errs low here: retrain it on more data near the bound, or use {fix}--safety-margin)",
                err=True,
            )
    command = _command_line(ctx)
    write_outputs(
        out,
        outcome,
        problem,
        reference,
        predictor_path=str(predictor),
        deploy_key=deploy.key() if deploy is not None else None,
        command=command,
    )
    best = outcome.best
    console.print(
        f"best        {best.arch.describe()}: predicted {best.latency_ms:.4g} ms "
        f"({best.low_ms:.4g} to {best.high_ms:.4g}), speed-up {reference.latency_ms / best.latency_ms:.3g}x, "
        f"quality {best.quality:.4g}"
    )
    c = problem.constraint
    if best.latency_ms > c.target_ms:  # allowed by a window reaching above the target (candidate, fast)
        asked = f"{c.speedup:g}x" if c.speedup is not None else f"{c.target_ms:.4g} ms"
        console.print(
            f"note        predicted {100 * (best.latency_ms / c.target_ms - 1):.1f}% slower than the {asked} asked: "
            f"inside the window {c.low:g},{c.high:g} of the target (--window 0,1 for a strict bound)"
        )
    console.print(
        f"searched    {len(outcome.history)} architectures in {outcome.wall_s:.2f} s ({outcome.stopped}); wrote {out}"
    )
    if not validate:
        where = "" if deploy is None else f" --device {deploy.device}"
        where += "" if deploy is None or deploy.threads is None else f" --threads {deploy.threads}"
        console.print(f"next        latbench validate --search {out}{where}")
    if validate:
        assert deploy is not None
        proto = protocol.config()
        _run_validate(out, deploy, proto, top=1, front=True, seed=seed)


def _run_validate(search_dir: Path, deploy: Any, proto: Any, top: int, front: bool, seed: int) -> dict[str, Any]:
    from latbench.cli.profile import progress_bar
    from latbench.search.validate import validate_search

    progress, on_progress = progress_bar("validate")
    with progress:
        doc = validate_search(search_dir, deploy, proto, top=top, front=front, seed=seed, on_progress=on_progress)
    _print_validation(doc)
    return doc


def _print_validation(doc: dict[str, Any]) -> None:
    from rich.table import Table

    ref = doc["reference"]
    c = doc["constraint"]
    for m in doc.get("predictor_mismatches") or []:
        typer.echo(f"latbench: warning: the search's predictor does not speak for this target: {m}", err=True)
    what = f"{c['speedup']:g}x" if c["speedup"] is not None else f"{c['latency_ms']:.4g} ms"
    console.print(
        f"reference   measured {ref['measured_ms']:.4g} ms (search used {ref['search_reference_ms']:.4g} ms, "
        f"{ref['search_reference_source']}); measured bound {c['measured_bound_ms']:.4g} ms for {what}"
    )
    table = Table(title=f"validation on {doc['deploy_key']}", title_justify="left")
    for col in ("architecture", "predicted ms", "measured ms", "error", "speed-up", "holds"):
        table.add_column(col, justify="left" if col == "architecture" else "right")
    for r in doc["architectures"]:
        err = r["prediction_error_pct"]
        table.add_row(
            ("* " if r["best"] else "  ") + r["describe"],
            "-" if r["predicted_ms"] is None else f"{r['predicted_ms']:.4g}",
            f"{r['measured_ms']:.4g}" + (" (unstable)" if r["unstable"] else ""),
            "-" if err is None else f"{err:+.1f}%",
            f"{r['measured_speedup']:.3g}x",
            "yes" if r["constraint_holds"] else "NO",
        )
    console.print(table)
    best = doc["best"]
    line = f"best        measured speed-up {best['measured_speedup']:.3g}x"
    if "speedup_error_pct" in best:
        line += f" ({best['speedup_error_pct']:+.1f}% from {c['speedup']:g}x)"
    line += "; constraint " + ("holds" if best["constraint_holds"] else "VIOLATED") + " by measurement"
    console.print(line)


@deploy_options(DEVICE)
@protocol_options
def validate(
    search_dir: Path = typer.Option(..., "--search", help="A directory written by latbench search."),
    top: int = typer.Option(
        1, "--top", help="How many of the search's best architectures to measure (the best always)."
    ),
    front: bool = typer.Option(True, "--front/--no-front", help="Also measure an nsga2 search's Pareto front."),
    deployment: DeployOptions = DEPLOYMENT,
    protocol: ProtocolOptions = PROTOCOL,
    seed: int = typer.Option(0, "--seed", help="Seeds the weights of the built models."),
) -> None:
    """Measure a search's result(s) and the reference in one interleaved run; write DIR/validate.json."""
    from latbench.search.run import read_result

    if top < 0:
        raise LatbenchError("--top", f"must be >= 0, got {top}")
    doc = read_result(search_dir)
    workload = doc["workload"]
    deploy = deployment.config(workload["batch"], workload["seq_len"])
    _run_validate(search_dir, deploy, protocol.config(), top=top, front=front, seed=seed)
    console.print(f"wrote {search_dir / 'validate.json'}")
