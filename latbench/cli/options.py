"""The deployment and protocol options of every measuring command, declared once.

``profile``, ``measure``, ``build-lut``, ``search``, ``validate``, ``evaluate`` and the
``fleet`` commands all take the same deployment options (``--backend --mode --precision
--threads --cache --option``, and ``--device``) and the same protocol options
(``--budget-s --min-samples --max-samples --target-ci --rounds --calls-per-round``).
They are declared here, in :data:`DEPLOY_OPTIONS` and :data:`PROTOCOL_OPTIONS`; a command
takes them with a decorator and receives one :class:`DeployOptions` / :class:`ProtocolOptions`
argument. A new option is one entry in one of the two tables.

An option the user did not give is ``None`` and is left to the library's config
(:class:`~latbench.profiling.config.DeployConfig`, :class:`~latbench.profiling.config.ProtocolConfig`),
so a default lives in one place, and the help prints it from there.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

import typer

from latbench.errors import LatbenchError
from latbench.profiling.config import ProtocolConfig

F = TypeVar("F", bound=Callable[..., Any])

_MODE_HELP = (
    "torch: eager | graph | compile; onnxruntime: cpu | cuda | tensorrt (execution provider); tensorrt: engine. "
    "Default: graph on CUDA, eager on CPU."
)

#: ``--device`` where a command measures on a target it defaults to.
DEVICE = typer.Option("cpu", "--device", help="cpu or cuda:N.")
#: ``--batch`` of the commands that default to batch 1.
BATCH = typer.Option(1, "--batch", help="Batch size.")


@dataclass(frozen=True)
class _Decl:
    """One option: its parameter name, the config field it sets, its type and its ``typer.Option``."""

    name: str
    field: str
    annotation: Any
    option: Any


def _protocol_default(name: str) -> str:
    f = {f.name: f for f in fields(ProtocolConfig)}[name]
    value = f.default if f.default is not MISSING else None
    if value is None:
        return "per device"
    return value if isinstance(value, str) else f"{value:g}"


def _proto(name: str, flag: str, annotation: Any, help_text: str) -> _Decl:
    return _Decl(
        flag.removeprefix("--").replace("-", "_"),
        name,
        annotation,
        typer.Option(None, flag, help=f"{help_text} Default: {_protocol_default(name)}.", show_default=False),
    )


#: Deployment options (``--device`` is added per command: its default differs).
DEPLOY_OPTIONS: tuple[_Decl, ...] = (
    _Decl(
        "backend",
        "backend",
        str | None,
        typer.Option(None, "--backend", help="torch, onnxruntime or tensorrt. Default: torch.", show_default=False),
    ),
    _Decl("mode", "mode", str | None, typer.Option(None, "--mode", help=_MODE_HELP)),
    _Decl(
        "precision",
        "precision",
        str | None,
        typer.Option(None, "--precision", help="fp32, fp16, bf16 or int8. Default: fp32.", show_default=False),
    ),
    _Decl(
        "threads",
        "threads",
        int | None,
        typer.Option(
            None,
            "--threads",
            help="CPU intra-op threads. Default: one per physical core less one left free (1 on a 2-core machine), "
            "pinned to the last cores of the CPU set (see --pin).",
        ),
    ),
    _Decl(
        "cache",
        "cache",
        str | None,
        typer.Option(
            None,
            "--cache",
            help="warm (one buffer) or cold (rotate inputs, flush caches). Default: warm.",
            show_default=False,
        ),
    ),
    _Decl(
        "option",
        "options",
        list[str] | None,
        typer.Option(None, "--option", help="Backend option KEY=VALUE (repeatable)."),
    ),
)

#: Protocol options: each sets one :class:`ProtocolConfig` field; its default is that field's.
PROTOCOL_OPTIONS: tuple[_Decl, ...] = (
    _proto(
        "budget_s",
        "--budget-s",
        float | None,
        "Time budget of one measurement, in seconds; it stops sampling only once --min-samples and --rounds are met.",
    ),
    _proto("min_samples", "--min-samples", int | None, "Timed calls always taken per measurement."),
    _proto("max_samples", "--max-samples", int | None, "Timed calls at most per measurement."),
    _proto("target_rel_ci", "--target-ci", float | None, "Stop at this relative half-width of the median's CI."),
    _proto("min_rounds", "--rounds", int | None, "Interleaved rounds a measurement takes part in at least."),
    _proto("calls_per_round", "--calls-per-round", int | None, "Timed calls per configuration per round."),
    _proto(
        "warmup_calls",
        "--warmup-calls",
        int | None,
        "Untimed calls before sampling, at least (and for at least 0.2 s on a CPU, 25 ms on a GPU).",
    ),
    _proto(
        "reference",
        "--reference-workload",
        str | None,
        "CPU workload timed in every round to read the machine's speed (ref_ms): bert-block or matmul (that of "
        "stores profiled before it had a name).",
    ),
    _Decl(
        "pin",
        "pin_threads",
        bool | None,
        typer.Option(
            None,
            "--pin/--no-pin",
            help="Pin a CPU measurement's threads to fixed cores (the last of the CPU set; run under "
            "`taskset -c N` to choose). Default: pinned.",
            show_default=False,
        ),
    ),
)


@dataclass(frozen=True)
class DeployOptions:
    """The deployment options as typed (``None``: not given, the config decides)."""

    device: str | None
    values: Mapping[str, Any] = field(default_factory=dict)

    def given(self) -> list[str]:
        """The flags given besides ``--device``."""
        return [d.option.param_decls[0] for d in DEPLOY_OPTIONS if self.values.get(d.name) not in (None, [], ())]

    def config(self, batch: int, seq: int | None, device: str | None = None, **defaults: Any) -> Any:
        """A validated :class:`~latbench.profiling.config.DeployConfig` (errors name the option).

        ``device`` replaces ``--device``; ``defaults`` fill options the user did not give
        (a predictor's deployment, say).
        """
        from latbench.profiling.config import DeployConfig, parse_options

        kwargs: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
        for d in DEPLOY_OPTIONS:
            value = self.values.get(d.name)
            if value not in (None, [], ()):
                kwargs[d.field] = parse_options(value) if d.name == "option" else value
        kwargs.setdefault("backend", "torch")
        try:
            return DeployConfig(device=device or self.device or "cpu", batch=batch, seq_len=seq, **kwargs)
        except LatbenchError as exc:
            where = exc.where if exc.where.startswith("option") else f"--{exc.where.replace('_', '-')}"
            raise LatbenchError(where, exc.what) from None


@dataclass(frozen=True)
class ProtocolOptions:
    """The protocol options as typed, by :class:`ProtocolConfig` field (``None``: not given)."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def config(self, **defaults: Any) -> ProtocolConfig:
        """A validated :class:`ProtocolConfig`: the options given, else ``defaults``, else the config's own."""
        kwargs = {**defaults, **{k: v for k, v in self.values.items() if v is not None}}
        try:
            return ProtocolConfig(**kwargs)
        except LatbenchError as exc:
            name = exc.where.removeprefix("protocol ")
            flags = {d.field: d.option.param_decls[0] for d in PROTOCOL_OPTIONS}
            raise LatbenchError(flags.get(name, name), exc.what) from None


def _inject(func: F, placeholder: str, decls: tuple[_Decl, ...], pack: Callable[[dict[str, Any]], Any]) -> F:
    """``func`` with parameter ``placeholder`` replaced by one option per declaration.

    typer reads the returned function's signature, so it sees the options; at call time
    their values are packed (``pack``) into the one ``placeholder`` argument.
    """
    sig = inspect.signature(func)
    hints = typing_hints(func)
    params = list(sig.parameters.values())
    index = [p.name for p in params].index(placeholder)
    names = [d.name for d in decls]
    new = [
        inspect.Parameter(d.name, inspect.Parameter.KEYWORD_ONLY, default=d.option, annotation=d.annotation)
        for d in decls
    ]
    kind = inspect.Parameter.KEYWORD_ONLY
    params = [p.replace(kind=kind, annotation=hints.get(p.name, p.annotation)) for p in params]
    params = params[:index] + new + params[index + 1 :]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        kwargs[placeholder] = pack({n: kwargs.pop(n) for n in names if n in kwargs})
        return func(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


def typing_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """``func``'s annotations evaluated (the CLI modules use ``from __future__ import annotations``)."""
    from typing import get_type_hints

    return get_type_hints(func)


def deploy_options(device: Any = DEVICE) -> Callable[[F], F]:
    """Give a command the deployment options and ``--device`` (with this ``typer.Option``).

    The command declares a parameter ``deployment: DeployOptions``; it receives the options in it.
    """

    def decorate(func: F) -> F:
        device_decl = _Decl("device", "device", str | None, device)
        decls = (device_decl, *DEPLOY_OPTIONS)

        def pack(values: dict[str, Any]) -> DeployOptions:
            dev = values.pop("device", None)
            return DeployOptions(device=dev, values=values)

        return _inject(func, "deployment", decls, pack)

    return decorate


def protocol_options(func: F) -> F:
    """Give a command the protocol options; it declares ``protocol: ProtocolOptions`` and receives them in it."""

    def pack(values: dict[str, Any]) -> ProtocolOptions:
        return ProtocolOptions({d.field: values.get(d.name) for d in PROTOCOL_OPTIONS})

    return _inject(func, "protocol", PROTOCOL_OPTIONS, pack)


#: The placeholder default of a command's ``deployment`` parameter (the decorator replaces it).
DEPLOYMENT = DeployOptions(device=None)
#: The placeholder default of a command's ``protocol`` parameter (the decorator replaces it).
PROTOCOL = ProtocolOptions()
