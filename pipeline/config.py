"""The run config: pydantic models (frozen, unknown keys refused) and safe YAML loading.

The config is a contract with users: keys may be added, existing ones keep working.  Loading
resolves relative paths against the config file's folder, so a config works from any working
directory (cron starts jobs in ``$HOME``).  Every problem becomes a :class:`ConfigError` whose
message names the file, the line where known, and the dotted key.
"""

from __future__ import annotations

import difflib
import keyword
import os
import re
import reprlib
import typing
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from .errors import ConfigError

#: Largest window side accepted; larger is almost surely a typo and would only waste memory.
MAX_WINDOW = 16_385

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
#: a scheme prefix (two letters or more, so that a Windows drive ``C:`` is not one)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")

#: URL schemes accepted in ``inputs.*.path`` and ``output.path`` (fsspec protocols); anything
#: else with a scheme (``ftp://``, ``javascript:``, ``data:``) is refused.
ALLOWED_SCHEMES = frozenset({"file", "memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "http", "https"})
#: ... of which these are read-only (refused for ``output.path``).
READ_ONLY_SCHEMES = frozenset({"http", "https"})

PositiveInt = Annotated[StrictInt, Field(ge=1)]
WindowSide = Annotated[StrictInt, Field(ge=1, le=MAX_WINDOW)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_array_path(v: str | None) -> str | None:
    """An array path inside a store: ``/``-separated names, none of them ``.`` or ``..``."""
    if v is None:
        return v
    parts = v.strip("/").split("/")
    if v.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in v or any(ord(c) < 32 for c in v):
        raise ValueError("must be a path inside the store ('name' or 'group/name', no '..', '.', empty parts or control characters)")
    return v


def _check_path(v: str) -> str:
    if any(ord(c) < 32 for c in v):
        raise ValueError("contains a control character")
    return v


StorageOptions = dict[str, Any]


class InputSpec(_Model):
    """One input image: a Zarr store and the array inside it."""

    path: Name
    array: Name | None = None  #: array inside the store; None when ``path`` is the array itself
    #: pixels equal to this value are missing (NaN always is); unset: what the input's attributes
    #: declare (``_FillValue``, ``missing_value``, ``nodata``); ``null`` or ``none``: no nodata
    nodata: StrictInt | float | Literal["none"] | None = None
    #: fsspec options for a URL path (``s3://``, ``gs://``, ...), e.g. ``{endpoint_url: ..., anon: true}``;
    #: credentials normally come from the environment or the usual config files, not from here
    storage_options: StorageOptions | None = None
    #: chunks of the input that are not stored (read as the array's fill value): ``warn`` (report
    #: count and first keys, run anyway), ``error`` (refuse, exit 2) or ``not-ready`` (the delivery
    #: is still arriving: exit 5 so that a scheduler retries later)
    unstored_chunks: Literal["warn", "error", "not-ready"] = "warn"
    #: a file the delivery writes last (e.g. ``../in/${DATE}/_SUCCESS``); while it does not exist
    #: the input is not ready (exit 5).  Relative paths resolve against the config's folder.
    ready_marker: Name | None = None

    _array_ok = field_validator("array")(classmethod(lambda cls, v: _check_array_path(v)))
    _path_ok = field_validator("path")(classmethod(lambda cls, v: _check_path(v)))
    _marker_ok = field_validator("ready_marker")(classmethod(lambda cls, v: v if v is None else _check_path(v)))

    @property
    def nodata_given(self) -> bool:
        """Whether the config sets ``nodata`` (a value, or ``null``/``none`` to switch off the
        nodata the input's attributes declare)."""
        return "nodata" in self.model_fields_set

    @property
    def nodata_value(self) -> int | float | None:
        """The configured nodata value (None: unset or switched off)."""
        return None if self.nodata is None or isinstance(self.nodata, str) else self.nodata  # the only str is "none"


Reducer = Literal["sum", "mean", "min", "max", "var", "std", "count"]
Boundary = Literal["shrink", "valid", "constant", "reflect", "mirror", "nearest", "wrap"]
Weight = StrictInt | float


class WindowSpec(_Model):
    """The moving window and how it is reduced."""

    size: WindowSide | tuple[WindowSide, WindowSide] | None = None  #: required unless weights are given
    reduce: Reducer | Annotated[list[Reducer], Field(min_length=1)] = "sum"
    boundary: Boundary = "shrink"
    cval: StrictInt | float = 0  #: the value outside the image for boundary 'constant'

    _cval_ok = field_validator("cval", mode="before")(classmethod(lambda cls, v: _check_number(v)))
    shape: Literal["rect", "disk"] = "rect"
    weights: Annotated[list[Annotated[list[Weight], Field(min_length=1)]], Field(min_length=1)] | None = None
    axes: tuple[StrictInt | Name, StrictInt | Name] | tuple[StrictInt | Name] | None = None

    @field_validator("reduce")
    @classmethod
    def _unique(cls, v):
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError(f"reducers must not repeat, got {v}")
        return v

    @field_validator("weights")
    @classmethod
    def _rectangular(cls, v):
        if v is not None:
            if len({len(r) for r in v}) != 1:
                raise ValueError("weights must be a rectangular matrix (rows of equal length)")
            if any(len(r) > MAX_WINDOW for r in v) or len(v) > MAX_WINDOW:
                raise ValueError(f"weights larger than {MAX_WINDOW} per side")
        return v


class OutputSpec(_Model):
    """Where the result goes."""

    path: Name
    array: Name = "result"
    overwrite: StrictBool = False
    dtype: Name | dict[str, Name] | None = None  #: output dtype (or one per statistic); default: automatic
    fill_value: StrictInt | float | None = None  #: integer outputs: value of windows with no valid pixel
    storage_options: StorageOptions | None = None  #: fsspec options for a URL path (see InputSpec)

    _array_ok = field_validator("array")(classmethod(lambda cls, v: _check_output_array(_check_array_path(v))))
    _path_ok = field_validator("path")(classmethod(lambda cls, v: _check_path(v)))
    _fill_ok = field_validator("fill_value", mode="before")(classmethod(lambda cls, v: _check_number(v)))


#: Names an output array cannot take: the store's own metadata files, and the sidecar's lock files
#: and the suffixes of a replacement in progress (``pipeline.runner.STAGED``/``RETIRED``).
_STORE_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
_SIDECAR_FILES = ("lock", "lock.guard")
_RESERVED_SUFFIXES = (".pipeline-new", ".pipeline-old")


def _check_output_array(v: str | None) -> str | None:
    if v is None:  # not reached: the field is required (typing: _check_array_path passes None on)
        return v
    parts = v.strip("/").split("/")
    if any(p in _STORE_FILES for p in parts) or parts[0] in _SIDECAR_FILES or v.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"{v!r} collides with a file of the store or of its .pipeline folder; choose another array name")
    return v


def _check_number(v: Any) -> Any:
    """Integers beyond 64 bits (a 4,000-digit hex literal) are refused, not overflowed."""
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        raise ValueError(f"an integer of {v.bit_length()} bits does not fit in 64 bits")
    return v


#: local schedulers; anything else is ``local-cluster`` or a scheduler address
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
SCHEDULER_PROTOCOLS = ("tcp", "tls", "ucx", "ws", "wss", "inproc")
_ADDRESS = re.compile(r"^(" + "|".join(SCHEDULER_PROTOCOLS) + r")://[^\s/]+$")


def check_scheduler(value: str) -> str:
    """``threads | processes | synchronous | local-cluster`` or a scheduler address
    (``tcp://host:8786``, ``tls://host:8786``)."""
    if value in LOCAL_SCHEDULERS or value == "local-cluster" or _ADDRESS.match(value):
        return value
    raise ValueError(
        "must be threads, processes, synchronous, local-cluster or a scheduler address such as "
        "tcp://host:8786 or tls://host:8786"
    )


def _check_bytes(value: str | int) -> str | int:
    from dask.utils import parse_bytes

    if isinstance(value, str) and value != "auto":
        try:
            n = parse_bytes(value)
        except (ValueError, TypeError, OverflowError):
            raise ValueError("must be a size such as 4GiB or 500MB, or auto") from None
        if not 0 < n < 2**63:
            raise ValueError("must be a size such as 4GiB or 500MB, or auto")
    return value


Bytes = Annotated[Annotated[StrictInt, Field(ge=1)] | Annotated[str, Field(min_length=1)], AfterValidator(_check_bytes)]


class SecuritySpec(_Model):
    """TLS for the scheduler connection: paths to PEM files, passed to ``distributed.Security``."""

    ca_file: Name  #: the certificate authority that signed the scheduler's and workers' certificates
    cert: Name  #: this client's certificate (may also hold the key)
    key: Name | None = None  #: this client's private key, when not inside ``cert``
    require_encryption: StrictBool = True


class ClusterSpec(_Model):
    """An HPC job queue that starts the workers (dask-jobqueue, ``pip install pipeline[hpc]``)."""

    kind: Literal["slurm", "pbs", "sge", "lsf"]
    jobs: PositiveInt = 1  #: number of jobs to submit
    cores: PositiveInt  #: cores per job
    memory: Bytes  #: memory per job, e.g. 16GiB
    processes: PositiveInt | None = None  #: worker processes per job (default: jobqueue's choice)
    walltime: Name | None = None  #: e.g. 02:00:00
    queue: Name | None = None  #: partition / queue
    account: Name | None = None  #: account (slurm, pbs) or project (sge, lsf) charged for the jobs
    interface: Name | None = None  #: network interface the scheduler and workers use, e.g. ib0
    local_directory: Name | None = None  #: worker scratch directory on the compute nodes
    job_extra_directives: tuple[str, ...] = ()  #: extra '#SBATCH ...'-style lines (without the prefix)
    job_script_prologue: tuple[str, ...] = ()  #: shell lines run before the worker starts (module load, ...)
    python: Name | None = None  #: Python on the compute nodes (default: this one)


class ComputeSpec(_Model):
    """How the work is executed."""

    #: threads | processes | synchronous | local-cluster | tcp://host:port | tls://host:port;
    #: unset: dask's config (``DASK_SCHEDULER_ADDRESS``, ``scheduler-address``, ``scheduler``),
    #: else threads
    scheduler: Annotated[str, AfterValidator(check_scheduler)] | None = None
    chunks: Literal["auto"] | PositiveInt | tuple[PositiveInt, PositiveInt] = "auto"
    workers: PositiveInt | None = None  #: threads or processes, or local-cluster workers; default: the CPU count
    threads_per_worker: PositiveInt | None = None  #: local-cluster: threads in each worker (default 1)
    memory_limit: Bytes | None = None  #: local-cluster: per worker (default: system memory / workers)
    security: SecuritySpec | None = None  #: TLS certificates for the scheduler connection
    cluster: ClusterSpec | None = None  #: start workers through an HPC job queue
    worker_timeout: Annotated[float, Field(gt=0)] = 60.0  #: seconds to wait for a first worker


class Config(_Model):
    """A whole run config, with paths already resolved."""

    inputs: dict[Name, InputSpec] = Field(min_length=1)
    op: Annotated[str, Field(min_length=1)]
    window: WindowSpec
    output: OutputSpec
    compute: ComputeSpec = ComputeSpec()

    @field_validator("inputs")
    @classmethod
    def _names_are_identifiers(cls, v: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for name in v:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"input name {name!r} must be a Python-style identifier (used in op)")
            plain = unicodedata.normalize("NFKC", name)
            if plain != name:  # op's names are read NFKC-normalised: 'ａ' in op means 'a'
                raise ValueError(f"input name {name!r} reads as {plain!r} in op (Unicode NFKC); write {plain!r}")
        return v


# --------------------------------------------------------------------------------------------
# YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silently ignored key is a silent bug)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file safely (no Python tags, no duplicate keys) into a mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file ({e.__class__.__name__}: {e})", where=str(p)) from None
    text, restore = _protect_templates(text)
    try:
        data = restore(yaml.load(text, Loader=_StrictLoader))  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(" ".join(str(s).split()) for s in (e.context, e.problem) if s)
        raise ConfigError(f"invalid YAML: {what}", where=f"{p}{line}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {' '.join(str(e).split())}", where=str(p)) from None
    except (RecursionError, TypeError, ValueError, OverflowError, MemoryError) as e:
        raise ConfigError(f"invalid YAML: {_hostile(e)}", where=str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys (inputs, op, window, output, ...)", where=str(p))
    if _expanded_size(data) > MAX_VALUES:
        raise ConfigError(f"the config expands to more than {MAX_VALUES} values (YAML aliases used as a bomb?)", where=str(p))
    return data


def _protect_templates(text: str) -> tuple[str, Any]:
    """``${NAME}`` templates replaced by plain-word placeholders before YAML parsing, so that
    ``{path: ../in/${DATE}/a.zarr}`` (a flow mapping, where ``{`` is special) parses like the quoted
    form; the returned function puts the templates back into the parsed strings (keys and values),
    where :func:`expand_variables` substitutes them.  Placeholders never span a line, so YAML
    error lines are unchanged."""
    if "${" not in text:
        return text, lambda data: data
    prefix = "pipelinetemplate"
    while prefix in text:
        prefix += "x"
    found: list[str] = []

    def hide(m: re.Match[str]) -> str:
        found.append(m.group(0))  # ``$$`` too: ``$${X}`` must not leave a bare ``{`` behind
        return f"{prefix}{len(found) - 1}z"

    hidden = re.sub(r"\$\$(?:\{[^}\n]*\})?|\$\{[^}\n]*\}", hide, text)
    token = re.compile(re.escape(prefix) + r"(\d+)z")

    def restore(data: Any) -> Any:
        if isinstance(data, dict):
            return {restore(k): restore(v) for k, v in data.items()}
        if isinstance(data, list):
            return [restore(v) for v in data]
        if isinstance(data, str) and prefix in data:
            return token.sub(lambda m: found[int(m.group(1))], data)
        return data

    return hidden, restore


def _hostile(e: BaseException) -> str:
    """What a YAML document that is valid YAML but no config (nested 20,000 deep, a list as a
    mapping key, a 5,000-digit number) did, in words."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, TypeError):
        return "a mapping key must be a plain value (not a list or mapping)"
    if isinstance(e, MemoryError):
        return "too large"
    return "a number too large to read" if "digits" in str(e) or isinstance(e, OverflowError) else str(e).splitlines()[0][:100]


#: A config holds a few dozen values; YAML aliases can make a small file expand to billions.
MAX_VALUES = 100_000
#: A string counts as one value per this many characters (so at most ~10 MB of text expands).
CHARS_PER_VALUE = 100


def _expanded_size(data: Any) -> int:
    """How many values ``data`` holds once aliases are expanded, counted over the shared nodes
    (each counted once per id, so this is linear in the file's size)."""
    memo: dict[int, int] = {}

    def size(node: Any, depth: int = 0) -> int:
        if isinstance(node, str):  # long strings count too: `$$` text repeated by aliases
            return 1 + len(node) // CHARS_PER_VALUE
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key not in memo:
            if depth > 100:  # (a YAML alias cannot form a cycle in a safe load, but stay finite)
                return MAX_VALUES + 1
            children = node.values() if isinstance(node, dict) else node
            memo[key] = min(MAX_VALUES + 1, 1 + sum(size(c, depth + 1) for c in children))
        return memo[key]

    return size(data)


# --------------------------------------------------------------------------------------------
# validation


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = [str(x) for x in loc if not (isinstance(x, str) and (x in _UNION_TAGS or "[" in x))]
    return ".".join(parts) or "config"


# pydantic puts the union member tried into the location; drop those tags from dotted keys
_UNION_TAGS = {"int", "str", "float", "bool", "tuple[int, int]", "literal['auto']", "constrained-int", "constrained-str", "is-instance"}


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at ``loc`` (for 'did you mean' suggestions)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            if len(loc) > 2 and loc[0] == "inputs" and part == loc[1]:  # inputs.<name>.<key>
                model = InputSpec
                continue
            return []
        ann = field.annotation
        for option in (ann, *typing.get_args(ann)):  # also ``Model | None``
            if isinstance(option, type) and issubclass(option, BaseModel):
                model = option
    return list(model.model_fields)


_short_repr = reprlib.Repr()
_short_repr.maxlevel = 3
_short_repr.maxstring = 50
_short_repr.maxother = 50


def _format_error(err: Mapping[str, Any]) -> tuple[str, str]:
    loc = tuple(err["loc"])
    where = _dotted(loc)
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        choices = _valid_keys(Config, loc)
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (f" (valid keys: {', '.join(choices)})" if choices else "")
        return where, f"unknown key{hint}"
    if err["type"] == "missing":
        return where, "required key is missing"
    msg = err["msg"]
    if "input" in err and err["type"] not in ("missing",):
        got = err["input"]
        if isinstance(got, int) and not isinstance(got, bool) and got.bit_length() > 200:
            shown = f"an integer of {got.bit_length()} bits"  # repr of a 5,000-digit int raises
        else:
            shown = _short_repr.repr(got)  # bounded: a YAML alias bomb must not be expanded here
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    return where, msg


def _is_url(path: str) -> bool:
    return bool(_URL.match(path))


def _resolve(path: str, base: Path) -> str:
    if path.startswith("file://") and not path[len("file://") :].startswith("/"):
        return "file://" + _resolve(path[len("file://") :], base)  # relative: against the config's folder
    if _is_url(path):
        return path
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        p = base / p
    return os.path.normpath(str(p))


def parse_config(data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None, source: str = "config") -> Config:
    """Validate a config mapping and resolve its relative paths against ``base_dir``.

    ``source`` (the file name) prefixes error messages.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("the config must be a mapping", where=source)
    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as e:
        problems: dict[str, str] = {}
        for err in e.errors():
            where, msg = _format_error(err)
            # a union (``size: 3`` or ``[3, 5]``) reports each member's failure: keep one per
            # key, the most specific (``window.size.0`` over ``window.size``)
            related = [k for k in problems if k == where or k.startswith(where + ".") or where.startswith(k + ".")]
            if any(len(k) >= len(where) for k in related):
                continue
            for k in related:
                del problems[k]
            problems[where] = msg
        raise ConfigError.several([(f"{source}: {k}", m) for k, m in problems.items()]) from None
    _check_schemes(cfg, source)
    if cfg.window.size is None and cfg.window.weights is None:
        raise ConfigError("required key is missing (or give window.weights)", where=f"{source}: window.size")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    inputs = {
        k: v.model_copy(
            update={"path": _resolve(v.path, base), "ready_marker": None if v.ready_marker is None else _resolve(v.ready_marker, base)}
        )
        for k, v in cfg.inputs.items()
    }
    output = cfg.output.model_copy(update={"path": _resolve(cfg.output.path, base)})
    compute = cfg.compute
    if compute.security is not None:
        sec = compute.security
        files = {k: _resolve(getattr(sec, k), base) for k in ("ca_file", "cert", "key") if getattr(sec, k) is not None}
        compute = compute.model_copy(update={"security": sec.model_copy(update=files)})
    return cfg.model_copy(update={"inputs": inputs, "output": output, "compute": compute})


def with_scheduler(cfg: Config, scheduler: str | None, *, where: str = "--scheduler") -> Config:
    """``cfg`` with ``compute.scheduler`` replaced (the CLI's ``--scheduler``, which also replaces
    a ``compute.cluster``); None keeps it."""
    if scheduler is None:
        return cfg
    try:
        check_scheduler(scheduler)
    except ValueError as e:
        raise ConfigError(f"{e} (got {scheduler!r})", where=where) from None
    return cfg.model_copy(update={"compute": cfg.compute.model_copy(update={"scheduler": scheduler, "cluster": None})})


def scheduler_overrides(scheduler: str | None, *, where: str = "--scheduler") -> list[str]:
    """``--set`` overrides for the CLI's ``--scheduler`` (which also replaces a ``compute.cluster``)."""
    if scheduler is None:
        return []
    try:
        check_scheduler(scheduler)
    except ValueError as e:
        raise ConfigError(f"{e} (got {scheduler!r})", where=where) from None
    return [f"compute.scheduler={scheduler}", "compute.cluster=null"]


def _check_schemes(cfg: Config, source: str) -> None:
    """The URL policy: local paths, ``file://`` and the fsspec schemes in :data:`ALLOWED_SCHEMES`;
    ``http(s)`` only for inputs."""
    paths = [(f"inputs.{k}.path", v.path, False) for k, v in cfg.inputs.items()] + [("output.path", cfg.output.path, True)]
    for key, path, is_output in paths:
        check_url(path, f"{source}: {key}", output=is_output)


def check_url(path: str, where: str, *, output: bool = False) -> None:
    """The URL policy for one store path (configs, ``pipeline info`` and ``verify`` alike)."""
    m = _SCHEME.match(path)
    if m is None:
        return
    scheme = m.group(1).lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ConfigError(
            f"URL scheme {scheme!r} is not allowed (allowed: local paths, {', '.join(s + '://' for s in sorted(ALLOWED_SCHEMES))})",
            where=where,
        )
    if not path[m.end() :].startswith("//"):
        raise ConfigError(f"malformed URL {path!r} (expected {scheme}://...)", where=where)
    if output and scheme in READ_ONLY_SCHEMES:
        raise ConfigError(f"{scheme}:// is read-only; the output must be a local path or a writable store", where=where)


# --------------------------------------------------------------------------------------------
# overrides and templates

_VAR = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_assignment(text: str, *, option: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` (as given to ``--set`` or ``--var``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}", where=option)
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, source: str = "config") -> dict[str, Any]:
    """Apply ``--set dotted.key=value`` overrides to a raw config mapping.

    Values are parsed as YAML scalars or flow collections (``5``, ``true``, ``[5, 3]``, ``abc``);
    intermediate mappings are created as needed.  Unknown keys are caught by validation later,
    with the same 'did you mean' suggestions as keys written in the file."""
    out: dict[str, Any] = _deep_copy(data)
    for text in overrides:
        dotted, raw = parse_assignment(text, option="--set")
        parts = dotted.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"bad key {dotted!r} (use dotted keys such as window.size)", where="--set")
        try:
            value = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else ""  # noqa: S506 - safe loader
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse the value of {dotted}: {str(e).splitlines()[0]}", where="--set") from None
        except (RecursionError, TypeError, ValueError, OverflowError, MemoryError) as e:
            raise ConfigError(f"cannot parse the value of {dotted}: {_hostile(e)}", where="--set") from None
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a mapping, cannot set {dotted}", where="--set")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def expand_variables(data: Any, variables: Mapping[str, str], *, source: str = "config", _loc: tuple[str, ...] = ()) -> Any:
    """Replace ``${NAME}`` in every string value by ``variables[NAME]`` (``$$`` is a literal ``$``).

    A value that is exactly ``${NAME}`` takes the variable parsed as a YAML scalar, so
    ``size: ${W}`` gives an int; inside a longer string the text is substituted.  An undefined
    variable is an error naming it and the key."""
    if isinstance(data, Mapping):
        return {k: expand_variables(v, variables, source=source, _loc=(*_loc, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_variables(v, variables, source=source, _loc=(*_loc, str(i))) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def lookup(name: str) -> str:
        if not _NAME.match(name):
            raise ConfigError(f"bad variable name ${{{name}}}", where=f"{source}: {'.'.join(_loc) or 'config'}")
        if name not in variables:
            raise ConfigError(
                f"undefined variable ${{{name}}} (set it in the environment or with --var {name}=...)",
                where=f"{source}: {'.'.join(_loc) or 'config'}",
            )
        return variables[name]

    whole = _VAR.fullmatch(data)
    if whole and whole.group(0) != "$$":
        value = lookup(whole.group(1))
        try:
            parsed = yaml.load(value, Loader=_StrictLoader) if value.strip() else value  # noqa: S506 - safe loader
        except (yaml.YAMLError, RecursionError, TypeError, ValueError, OverflowError):
            return value
        return parsed if isinstance(parsed, (str, int, float, bool)) else value
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else lookup(m.group(1)), data)


def load_config(
    config: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
) -> Config:
    """Load a config from a YAML file path or a mapping (relative paths: against the file's folder
    or, for a mapping, the current directory).  A config reached through a symlink resolves
    against the folder holding the link (one template linked into each day's folder reads that
    day's files), not the link's target.

    ``overrides`` are ``dotted.key=value`` strings applied first; then ``${NAME}`` templates are
    expanded from ``variables`` (default: the environment)."""
    env = dict(os.environ) if variables is None else dict(variables)
    if isinstance(config, Mapping):
        data, base, source = config, None, "config"
    else:
        p = Path(config)
        data, base, source = load_yaml(p), Path(os.path.abspath(p)).parent, str(p)
    if overrides:
        data = apply_overrides(data, overrides, source=source)
    if _expanded_size(data) > MAX_VALUES:  # before any copy or expansion (a --set value or a mapping)
        raise ConfigError(f"the config expands to more than {MAX_VALUES} values (YAML aliases used as a bomb?)", where=source)
    data = expand_variables(data, env, source=source)
    return parse_config(data, base_dir=base, source=source)
