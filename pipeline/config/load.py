"""The run config: loading a YAML file or a mapping into frozen pydantic models.

The config is a contract with users: keys may be added, existing ones keep working.  Loading
resolves relative paths against the config file's folder, so a config works from any working
directory (cron starts jobs in ``$HOME``).  Every problem becomes a :class:`ConfigError` whose
message names the file, the line where known, and the dotted key.

This module is the config's public face; each step has its own module:

* :mod:`pipeline.config.schema` - the models and their field checks;
* :mod:`pipeline.config.safeyaml` - safe YAML (no tags, no duplicate keys, no alias bombs);
* :mod:`pipeline.config.templates` - ``--set`` overrides, ``${NAME}`` templates, ``--scheduler``;
* :mod:`pipeline.config.validate` - validation and its messages (dotted keys, 'did you mean');
* :mod:`pipeline.config.paths` - the URL policy and paths resolved against the config's folder.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.config.paths import ALLOWED_SCHEMES, READ_ONLY_SCHEMES, check_url
from pipeline.config.safeyaml import CHARS_PER_VALUE, MAX_VALUES, check_expanded_size, load_yaml
from pipeline.config.schema import (
    LOCAL_SCHEDULERS,
    MAX_WINDOW,
    SCHEDULER_PROTOCOLS,
    Boundary,
    Bytes,
    ClusterSpec,
    ComputeSpec,
    Config,
    InputSpec,
    Name,
    OutputSpec,
    PositiveInt,
    Reducer,
    SecuritySpec,
    StorageOptions,
    TemplatesSpec,
    Weight,
    WindowSide,
    WindowSpec,
    check_scheduler,
)
from pipeline.config.templates import apply_overrides, expand_variables, parse_assignment, scheduler_overrides
from pipeline.config.validate import parse_config, path_variables

__all__ = [
    "ALLOWED_SCHEMES",
    "CHARS_PER_VALUE",
    "LOCAL_SCHEDULERS",
    "MAX_VALUES",
    "MAX_WINDOW",
    "READ_ONLY_SCHEMES",
    "SCHEDULER_PROTOCOLS",
    "Boundary",
    "Bytes",
    "ClusterSpec",
    "ComputeSpec",
    "Config",
    "InputSpec",
    "Name",
    "OutputSpec",
    "PositiveInt",
    "Reducer",
    "SecuritySpec",
    "StorageOptions",
    "TemplatesSpec",
    "Weight",
    "WindowSide",
    "WindowSpec",
    "apply_overrides",
    "check_scheduler",
    "check_url",
    "expand_variables",
    "load_config",
    "load_yaml",
    "parse_assignment",
    "parse_config",
    "scheduler_overrides",
]


def load_config(
    config: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    confine: Collection[str] = (),
) -> Config:
    """Load a config from a YAML file path or a mapping (relative paths: against the file's folder
    or, for a mapping, the current directory).  A config reached through a symlink resolves
    against the folder holding the link (one template linked into each day's folder reads that
    day's files), not the link's target.

    ``overrides`` are ``dotted.key=value`` strings applied first; then ``${NAME}`` templates are
    expanded from ``variables`` (default: the environment).  The values of the variables named in
    ``confine`` (a batch's ``--var``/``--vars-from``) must stay inside one component of a path key,
    unless the config lists them in ``templates.allow_paths``."""
    env = dict(os.environ) if variables is None else dict(variables)
    if isinstance(config, Mapping):
        data, base, source = config, None, "config"
    else:
        p = Path(config)
        data, base, source = load_yaml(p), Path(os.path.abspath(p)).parent, str(p)
    if overrides:
        data = apply_overrides(data, overrides, source=source)
    check_expanded_size(data, where=source)  # before any copy or expansion (a --set value or a mapping)
    confined = frozenset(confine) - path_variables(data, source) if confine else frozenset()
    data = expand_variables(data, env, source=source, confine=confined)
    return parse_config(data, base_dir=base, source=source)
