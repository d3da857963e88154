"""Composing a config the way ``evalkit-run`` does, with Hydra's errors as one line.

The Python API (:func:`evalkit.compose`, :func:`evalkit.run`) and the CLI both compose here,
so neither imports the other.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from evalkit.errors import ConfigError, problem

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp"}
HYDRA_FLAGS_WITH_VALUE |= {"--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def compose(overrides: Sequence[str] = ()):
    """The configuration ``evalkit-run OVERRIDES`` would run (a Hydra ``DictConfig``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalkit.config.schema  # noqa: F401 - registers the schema with Hydra

    with (
        hydra_errors(list(overrides)),
        initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"),
    ):
        return hydra_compose(config_name="config", overrides=list(overrides))


def default_folder(cfg, now: datetime | None = None) -> Path:
    """Where ``evalkit-run`` would write this config: ``results/runs/<time>_<run name>``."""
    from evalkit.config.names import run_name

    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    name = run_name(
        str(cfg.dataset.name),
        cfg.dataset.get("path"),
        str(cfg.retriever.name),
        str(cfg.reranker.name),
        str(cfg.reranker.weights),
        int(cfg.pipeline.depth),
    )
    return Path("results") / "runs" / f"{stamp}_{name}"


def _overrides(argv: list[str]) -> list[str]:
    """The config overrides among ``evalkit-run``'s arguments (not Hydra's own flags)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-") or arg.lstrip("+~").startswith(("hydra.", "hydra/")):
            continue
        out.append(arg)
    return out


def _group_options(group: str) -> list[str]:
    folder = EXPERIMENTS_DIR if group == "experiments" else CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _known_keys() -> list[str]:
    from dataclasses import fields, is_dataclass

    from evalkit.config.schema import Config

    keys = []
    for f in fields(Config):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            keys += [f"{f.name}.{g.name}" for g in fields(default)]
        else:
            keys.append(f.name)
    return keys


def _hydra_message(error: Exception, overrides: list[str]) -> str:
    """One line for a Hydra composition error, naming the key or option and the choices."""
    text = str(error)
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if "/" in key or "." in key:
            continue
        options = _group_options(key)
        if options:
            for choice in value.split(","):
                if choice and choice not in options:
                    return problem(
                        f"unknown option '{choice}' for {key}",
                        key,
                        f"choose one of {options}",
                    )
    for item in overrides:
        key = item.lstrip("+~").partition("=")[0]
        if "." in key and key not in _known_keys():
            close = difflib.get_close_matches(key, _known_keys(), n=1)
            hint = f"did you mean {close[0]}?" if close else "evalkit-run --cfg job lists every key"
            return problem(f"unknown config key '{key}'", key, hint)
    first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    return problem(f"invalid overrides: {first}", fix="evalkit-run --cfg job lists every key")


@contextlib.contextmanager
def hydra_errors(overrides: list[str] | None = None) -> Iterator[None]:
    """Turn Hydra's composition errors into a one-line :class:`ConfigError`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_hydra_message(error, overrides or [])) from None


def precheck(argv: list[str]) -> None:
    """Compose and validate what ``evalkit-run ARGS`` would run, before Hydra starts:
    every value of every swept setting is tried (the others at their first value), so a
    typo in a sweep fails at once, in one line, not in job 7 of 12."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from evalkit.config.validate import validate

    overrides = _overrides(argv)
    _check_presets(overrides, multirun=any(a in ("-m", "--multirun") for a in argv))
    _check_output_dirs(argv)  # hydra.* keys are not among the config overrides
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:  # Hydra's grammar errors
        raise ConfigError(_hydra_message(error, overrides)) from None
    firsts, variants = [], []
    for item in parsed:
        if item.is_sweep_override():
            values = list(item.sweep_string_iterator())
            firsts.append(f"{item.get_key_element()}={values[0]}")
            variants.append((len(firsts) - 1, item.get_key_element(), values[1:]))
        else:
            firsts.append(item.input_line)
    combos = [firsts]
    for index, key, values in variants:
        for value in values:
            combo = list(firsts)
            combo[index] = f"{key}={value}"
            combos.append(combo)
    for combo in combos:
        validate(compose(combo))


def _check_output_dirs(overrides: list[str]) -> None:
    """``hydra.run.dir`` / ``hydra.sweep.dir``: a folder that cannot be made (a path under
    a regular file, a parent without write permission) is one line here, not Hydra's
    traceback after it started."""
    import os

    for item in overrides:
        key, _, value = item.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "${" in value:
            continue
        path = Path(value).expanduser().absolute()
        existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
        if not existing.is_dir():
            raise ConfigError(
                problem(
                    f"{key}={value} cannot be created: {existing} is a file, not a folder",
                    key,
                    "choose a path under a folder",
                )
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
            why = "it is on a read-only file system" if read_only else "no write permission in"
            raise ConfigError(
                problem(
                    f"{key}={value} cannot be created: {why} {existing}",
                    key,
                    "choose a folder you can write to",
                )
            )


def _check_presets(overrides: list[str], multirun: bool) -> None:
    """``experiments=NAME``: a name that is not a preset is refused with the nearest ones
    (Hydra's optional group would drop it silently), and a sweep preset without ``-m``
    is refused with the command that runs it (Hydra would run one job of it)."""
    options = _group_options("experiments")
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key != "experiments":
            continue
        for name in value.split(","):
            if name not in options:
                close = difflib.get_close_matches(name, options, n=2)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise ConfigError(
                    problem(
                        f"unknown preset '{name}' for experiments",
                        "experiments",
                        f"{hint}choose one of {options} (the files in experiments/)",
                    )
                )
            if not multirun and _is_sweep(name):
                raise ConfigError(
                    problem(
                        f"experiments={name} is a sweep preset: without -m it would run one job",
                        "experiments",
                        f"run it with -m: evalkit-run -m experiments={name}",
                    )
                )


def _is_sweep(preset: str) -> bool:
    import yaml

    data = yaml.safe_load((EXPERIMENTS_DIR / f"{preset}.yaml").read_text()) or {}
    return bool(((data.get("hydra") or {}).get("sweeper") or {}).get("params"))
