"""The config schema: pydantic models (frozen, unknown keys refused) and their field checks.

The config is a contract with users: keys may be added, existing ones keep working.  Every
value's check lives here, on its field; loading, templates and messages are elsewhere
(:mod:`pipeline.config.load` is the public face of all of it).
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from pipeline.plan.dtypes import check_64_bits as _check_number
from pipeline.plan.window import MAX_WINDOW

PositiveInt = Annotated[StrictInt, Field(ge=1)]
WindowSide = Annotated[StrictInt, Field(ge=1, le=MAX_WINDOW)]
Name = Annotated[str, Field(min_length=1, max_length=200)]

#: the longest path accepted (Linux's PATH_MAX, in bytes), and the longest component (NAME_MAX);
#: a relative path is held to the same limits once resolved (see ``pipeline.config.paths``)
PATH_MAX = 4096
NAME_MAX = 255


def check_path_length(v: str) -> str:
    """A path within the filesystems' limits: at most :data:`PATH_MAX` bytes (UTF-8) in all and,
    but in a URL (an object key, a query), :data:`NAME_MAX` per component; whether written
    absolute or relative."""
    if len(v.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise ValueError(f"a path longer than {PATH_MAX} bytes")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", v) and not v.startswith("file://"):
        return v
    longest = max(v.split("/"), key=lambda part: len(part.encode("utf-8", "surrogatepass")))
    if len(longest.encode("utf-8", "surrogatepass")) > NAME_MAX:
        raise ValueError(f"a path component longer than {NAME_MAX} bytes ({longest[:40]!r}...)")
    return v


#: a file path or URL (``inputs.*.path``, ``output.path``, TLS files, ...)
PathText = Annotated[str, Field(min_length=1), AfterValidator(check_path_length)]


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
    """One input image: a Zarr store and the array inside it, or a GeoTIFF file."""

    path: PathText
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
    ready_marker: PathText | None = None
    #: a GeoTIFF's band to read (1-based, as in GDAL); unset: one band is (y, x), several a leading ``band`` axis
    band: PositiveInt | None = None
    #: an OME-Zarr multiscale image's level: its index (0, full resolution, is the default) or its path
    level: Annotated[StrictInt, Field(ge=0)] | Name | None = None

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


#: at most this many window axes (numpy's limit on dimensions)
MAX_AXES = 32


class WindowSpec(_Model):
    """The moving window and how it is reduced."""

    #: one size, or one per window axis; required unless weights are given
    size: WindowSide | Annotated[tuple[WindowSide, ...], Field(min_length=1, max_length=MAX_AXES)] | None = None
    reduce: Reducer | Annotated[list[Reducer], Field(min_length=1)] = "sum"
    boundary: Boundary = "shrink"
    cval: StrictInt | float = 0  #: the value outside the image for boundary 'constant'

    _cval_ok = field_validator("cval", mode="before")(classmethod(lambda cls, v: _check_number(v)))
    shape: Literal["rect", "disk"] = "rect"
    weights: Annotated[list[Annotated[list[Weight], Field(min_length=1)]], Field(min_length=1)] | None = None
    axes: Annotated[tuple[StrictInt | Name, ...], Field(min_length=1, max_length=MAX_AXES)] | None = None
    #: scipy.ndimage's ``origin``: the window shifted by ``-origin`` per axis (one int, or one per axis)
    origin: StrictInt | Annotated[tuple[StrictInt, ...], Field(min_length=1, max_length=MAX_AXES)] = 0

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

    path: PathText
    array: Name = "result"
    overwrite: StrictBool = False
    dtype: Name | dict[str, Name] | None = None  #: output dtype (or one per statistic); default: automatic
    fill_value: StrictInt | float | None = None  #: integer outputs: value of windows with no valid pixel
    storage_options: StorageOptions | None = None  #: fsspec options for a URL path (see InputSpec)
    format: Literal["zarr", "cog"] | None = None  #: default: ``cog`` for a path ending in .tif/.tiff, else ``zarr``
    multiscale: StrictBool = False  #: Zarr: an OME-Zarr pyramid beside each output array (pipeline.storage.pyramid)
    #: Zarr v3 sharding: the shard shape in pixels (as zarr's ``create_array(shards=...)``), one
    #: int for every window axis or one per window axis, a multiple of the output chunks; unset:
    #: one object per chunk.  A processing block is then a shard (pipeline.plan.grid)
    shards: PositiveInt | Annotated[tuple[PositiveInt, ...], Field(min_length=1, max_length=MAX_AXES)] | None = None

    _array_ok = field_validator("array")(classmethod(lambda cls, v: _check_output_array(_check_array_path(v))))
    _path_ok = field_validator("path")(classmethod(lambda cls, v: _check_path(v)))
    _fill_ok = field_validator("fill_value", mode="before")(classmethod(lambda cls, v: _check_number(v)))

    @model_validator(mode="after")
    def _multiscale_zarr(self) -> OutputSpec:
        cog = self.format == "cog" or (self.format is None and str(self.path).lower().rstrip("/").endswith((".tif", ".tiff")))
        if self.multiscale and cog:
            raise ValueError("multiscale applies to Zarr outputs (a COG output has overviews): remove output.multiscale or write Zarr")
        if self.shards is not None and cog:
            raise ValueError("shards applies to Zarr outputs (a COG output is one file of tiles): remove output.shards or write Zarr")
        return self


#: Names an output array cannot take: the store's own metadata files, and the sidecar's lock files
#: and the suffixes of a replacement in progress (``pipeline.runner.runconfig.STAGED``/``RETIRED``).
_STORE_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
_SIDECAR_FILES = ("lock", "lock.guard", "swap.json")
_RESERVED_SUFFIXES = (".pipeline-new", ".pipeline-old")


def _check_output_array(v: str | None) -> str | None:
    if v is None:  # not reached: the field is required (typing: _check_array_path passes None on)
        return v
    parts = v.strip("/").split("/")
    if any(p in _STORE_FILES for p in parts) or parts[0] in _SIDECAR_FILES or v.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"{v!r} collides with a file of the store or of its .pipeline folder; choose another array name")
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

    ca_file: PathText  #: the certificate authority that signed the scheduler's and workers' certificates
    cert: PathText  #: this client's certificate (may also hold the key)
    key: PathText | None = None  #: this client's private key, when not inside ``cert``
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
    local_directory: PathText | None = None  #: worker scratch directory on the compute nodes
    job_extra_directives: tuple[str, ...] = ()  #: extra '#SBATCH ...'-style lines (without the prefix)
    job_script_prologue: tuple[str, ...] = ()  #: shell lines run before the worker starts (module load, ...)
    python: PathText | None = None  #: Python on the compute nodes (default: this one)


class ComputeSpec(_Model):
    """How the work is executed."""

    #: threads | processes | synchronous | local-cluster | tcp://host:port | tls://host:port;
    #: unset: dask's config (``DASK_SCHEDULER_ADDRESS``, ``scheduler-address``, ``scheduler``),
    #: else threads
    scheduler: Annotated[str, AfterValidator(check_scheduler)] | None = None
    chunks: Literal["auto"] | PositiveInt | Annotated[tuple[PositiveInt, ...], Field(min_length=1, max_length=MAX_AXES)] = "auto"
    workers: PositiveInt | None = None  #: threads or processes, or local-cluster workers; default: the CPU count
    threads_per_worker: PositiveInt | None = None  #: local-cluster: threads in each worker (default 1)
    memory_limit: Bytes | None = None  #: local-cluster: per worker (default: system memory / workers)
    security: SecuritySpec | None = None  #: TLS certificates for the scheduler connection
    cluster: ClusterSpec | None = None  #: start workers through an HPC job queue
    worker_timeout: Annotated[float, Field(gt=0)] = 60.0  #: seconds to wait for a first worker


#: a template variable's name (``${NAME}``, ``--var``, ``--vars-from``)
VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class TemplatesSpec(_Model):
    """How the values of a batch's variables (``--var``, ``--vars-from``) may shape paths.

    By default such a value substituted into a path key (``inputs.*.path``, ``ready_marker``,
    ``output.path``, ``compute.security.*``) must stay inside one path component: no ``/`` or
    ``\\``, no leading ``~``, and not making a component ``.``, ``..`` or empty."""

    #: variables whose values may be whole paths (``--var ROOT=/data/site``)
    allow_paths: tuple[Annotated[str, Field(pattern=VARIABLE_NAME)], ...] = ()


class Config(_Model):
    """A whole run config, with paths already resolved."""

    inputs: dict[Name, InputSpec] = Field(min_length=1)
    #: a formula, or several named ones (window expressions: one output array each)
    op: Annotated[str, Field(min_length=1)] | dict[Annotated[str, Field(min_length=1)], Annotated[str, Field(min_length=1)]]
    window: WindowSpec
    output: OutputSpec
    compute: ComputeSpec = ComputeSpec()
    #: read before the templates are expanded; not part of the result (not dumped: no fingerprint change)
    templates: TemplatesSpec = Field(default_factory=TemplatesSpec, exclude=True)

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
