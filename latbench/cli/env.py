"""``latbench env``: what this machine is, as a measurement would record it."""

from __future__ import annotations

import json

import typer

from latbench.cli._app import console


def onnxruntime_providers() -> dict[str, str] | None:
    """Each execution provider onnxruntime lists -> ``"loads"`` or why not; ``None`` without onnxruntime."""
    from latbench.errors import MissingDependencyError
    from latbench.profiling.backends.onnxruntime import provider_report

    try:
        return provider_report()
    except MissingDependencyError:
        return None


def env(as_json: bool = typer.Option(False, "--json", help="Print the fingerprint as JSON.")) -> None:
    """Show the environment fingerprint: CPU, threads, load, library versions, GPUs (through NVML), and which
    ONNX Runtime execution providers actually load (a listed one may not: a build for another CUDA)."""
    import torch  # noqa: F401  (so the fingerprint reports torch's thread count and CUDA view)

    from latbench.profiling.fingerprint import collect

    fp = collect()
    providers = onnxruntime_providers()
    if as_json:
        typer.echo(json.dumps({**fp.to_dict(), "onnxruntime_providers": providers}, indent=2))
        return
    cpu = fp.cpu
    console.print(f"env_id      {fp.env_id}")
    console.print(
        f"cpu         {cpu['model']} ({cpu['arch']}), {cpu['usable_cores']}/{cpu['logical_cores']} cores usable"
    )
    console.print(f"cpu flags   {' '.join(cpu['flags']) or '-'}")
    from latbench.profiling.placement import default_threads, plan

    console.print(f"threads     {fp.threads} (torch intra-op default)")
    console.print(f"measuring   CPU deployments default to {plan(default_threads()).summary()}")
    console.print(f"load avg    {fp.load_avg}")
    console.print(f"python      {fp.python} on {fp.platform}")
    console.print("libraries   " + ", ".join(f"{k} {v}" for k, v in fp.libraries.items()))
    if providers is None:
        console.print("onnxruntime not installed")
    for name, state in (providers or {}).items():
        console.print(f"ort EP      {name}: {state}", markup=False, highlight=False)
    if not fp.gpus:
        console.print("gpus        none visible through NVML (no NVIDIA driver, or nvidia-ml-py not installed)")
    for g in fp.gpus:
        state = g.get("state") or {}
        console.print(
            f"gpu {g.get('index')}       {g.get('name')} cc {g.get('compute_capability')}, {g.get('memory_gib')} GiB, "
            f"driver {g.get('driver_version')}, SM {state.get('sm_clock_mhz')} MHz, {state.get('temperature_c')} C, "
            f"{state.get('power_w')} W, throttle {state.get('throttle_reasons')}"
        )
