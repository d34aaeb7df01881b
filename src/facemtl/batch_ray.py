"""Batch inference on Ray Data: ``facemtl batch ... --engine ray`` and :func:`analyze_dataset`.

Each Ray actor holds one :class:`~facemtl.analyzer.FaceAnalyzer` (the model on ONNX Runtime by default, one
thread per actor: actors, not threads, make the parallelism) and analyses the batches of files Ray Data's
``map_batches`` gives it. A file that cannot be read becomes an error row, as in the local batch; the actor
never raises for a file. The rows have exactly the local batch's columns (:func:`facemtl._rows.csv_columns`).

Inside, the actors give one *packed* record per file (its table rows as JSON, and its JSON Lines record for a
``.jsonl`` output), so the command writes each file whole, in one write, through the local batch's writer as
results arrive: an interrupted run keeps what was written, and the next run resumes. :func:`analyze_dataset`
unpacks them into a Dataset of table rows.

Ray is optional: ``pip install "facemtl[ray]"``. Paths are read by the actors, so on a cluster they must be
visible to every node (a shared file system), and so must a ``--model`` file.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ._optional import require
from ._rows import csv_columns, csv_rows, json_record, safe_name
from .errors import ConfigError, FacemtlError

__all__ = ["analyze_dataset", "FileAnalyzer", "RAY_EXTRA"]

RAY_EXTRA = "ray"
PATH_COLUMNS = ("path", "item")  # a Dataset's column of file paths (read_binary_files' "path", from_items' "item")
DEFAULT_BATCH_SIZE = 16  # files per map_batches call
# An actor that dies (killed, out of memory, a crash in native code) is restarted and its batch retried on it, as
# Ray Data does by default; the retries are bounded, so a batch that kills every actor it meets stops the run
# with one error (what was written is kept, and the next run resumes) instead of looping for ever.
ACTOR_MAX_RESTARTS = -1  # per actor: no limit (each restart reloads the model)
ACTOR_MAX_TASK_RETRIES = 3  # per batch, after the actor that ran it died
TEST_EXIT_ONCE_ENV = "FACEMTL_TEST_ACTOR_EXIT_ONCE"


def _ray() -> Any:
    return require("ray", extra=RAY_EXTRA)


class FileAnalyzer:
    """The ``map_batches`` callable class: one FaceAnalyzer per actor, built once in the actor.

    A batch holds a ``path`` (or ``item``) column of file paths, or a ``bytes`` column of encoded images (with a
    ``path`` column naming them, as ``ray.data.read_binary_files(..., include_paths=True)`` gives). It returns one
    packed record per file: ``file`` (the name as every writer records it), ``rows`` (its table rows, JSON),
    ``n_faces``, ``failed`` and ``record`` (its JSON Lines record when ``jsonl``, else "")."""

    def __init__(self, analyzer_kwargs: dict[str, Any], jsonl: bool = False, cwd: str | None = None,
                 _test_exit_once: str | None = None) -> None:
        from .analyzer import FaceAnalyzer

        self._test_exit_once = _test_exit_once

        if cwd and os.path.isdir(cwd):  # relative paths (and error messages) as the driver sees them
            os.chdir(cwd)
        kwargs = dict(analyzer_kwargs)
        if kwargs.get("threads") is None:
            kwargs["threads"] = 1
        self.analyzer = FaceAnalyzer.from_checkpoint(**kwargs)
        self.jsonl = jsonl

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        if self._test_exit_once:
            _test_exit_once(self._test_exit_once)
        names, sources = _batch_sources(batch)
        out: dict[str, list] = {"file": [], "rows": [], "n_faces": [], "failed": [], "record": []}
        for name, res in zip(names, self._analyze(names, sources)):
            rows = csv_rows(res)
            for row in rows:
                row["file"] = safe_name(name)
            failed = not hasattr(res, "faces")
            out["file"].append(safe_name(name))
            out["rows"].append(json.dumps(rows))
            out["n_faces"].append(0 if failed else len(res.faces))
            out["failed"].append(failed)
            out["record"].append(json_record(res, name) if self.jsonl else "")
        return out

    def _analyze(self, names: list[str], sources: list[Any]) -> list[Any]:
        """One result per source: ImageResult or ItemError. Never raises for a file: should the batch fail as a
        whole, its files are analysed one at a time, each failure an error row."""
        from .analyzer import ItemError

        try:
            return list(self._results(names, sources))
        except Exception:  # noqa: BLE001 - recorded per file below
            out: list[Any] = []
            for name, src in zip(names, sources):
                try:
                    out.extend(self._results([name], [src]))
                except Exception as exc:  # noqa: BLE001 - the file's error row
                    out.append(ItemError(name, f"{type(exc).__name__}: {exc}"))
            return out

    def _results(self, names: list[str], sources: list[Any]) -> Iterator[Any]:
        if all(isinstance(s, str) for s in sources):
            from .analyzer import analyze_files  # the local batch's own reading (links that lead nowhere)

            return analyze_files(self.analyzer, sources)
        return self.analyzer.analyze_many(sources, errors="record")


def _test_exit_once(marker: str) -> None:
    """Test hook (tests/test_batch_ray.py), not an option: with ``FACEMTL_TEST_ACTOR_EXIT_ONCE=FILE`` in the
    driver's environment the first actor call that finds FILE absent creates it and dies (``os._exit(1)``)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def _batch_sources(batch: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """(names, sources) of a batch: paths, or encoded bytes named by their path column."""
    path_col = next((c for c in PATH_COLUMNS if c in batch), None)
    if "bytes" in batch:
        data = [bytes(b) for b in batch["bytes"]]
        names = [str(p) for p in batch[path_col]] if path_col else [f"<bytes {i}>" for i in range(len(data))]
        return names, data
    if path_col is None:
        raise FacemtlError(f"a Dataset to analyse needs a 'path' (or 'item') column of file paths or a 'bytes' "
                           f"column of encoded images; it has {sorted(batch)}")
    names = [os.fsdecode(p) if isinstance(p, bytes) else str(p) for p in batch[path_col]]
    return names, list(names)


def _unpack(batch: Any) -> Any:
    """Packed per-file records (a pyarrow Table) -> the table rows, typed as the batch Parquet file is."""
    import pyarrow as pa

    from ._rows import _arrow_schema, _typed_rows

    rows = [row for text in batch.column("rows").to_pylist() for row in json.loads(text)]
    schema = _arrow_schema(pa)
    return pa.Table.from_pylist([dict(zip(schema.names, v)) for v in _typed_rows(rows)], schema=schema)


MAX_BLOCKS = 2000  # blocks of a list of paths: about a batch each (spread over the actors), at most this many


def _dataset_of(data: Any, batch_size: int) -> Any:
    ray = _ray()
    if isinstance(data, ray.data.Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        data = [data]
    items = [{"path": os.fspath(p)} for p in data]
    blocks = max(1, min(MAX_BLOCKS, -(-len(items) // max(1, batch_size))))
    return ray.data.from_items(items, override_num_blocks=blocks)


def packed_dataset(data: Any, analyzer_kwargs: dict[str, Any], *, concurrency: int | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE, num_cpus: float = 1, jsonl: bool = False) -> Any:
    """The Dataset of packed per-file records (see :class:`FileAnalyzer`); what ``--engine ray`` writes."""
    ds = _dataset_of(data, batch_size)
    if concurrency is None:
        concurrency = max(1, int(_ray().cluster_resources().get("CPU", 1) // max(num_cpus, 1e-9)))
    ray = _ray()
    ctor = {"analyzer_kwargs": analyzer_kwargs, "jsonl": jsonl, "cwd": os.getcwd()}
    if os.environ.get(TEST_EXIT_ONCE_ENV):
        ctor["_test_exit_once"] = os.environ[TEST_EXIT_ONCE_ENV]
    kwargs = dict(fn_constructor_kwargs=ctor, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(
        size=concurrency), num_cpus=num_cpus, batch_format="numpy")
    try:  # Ray 2.60 takes the actors' fault tolerance only as (deprecated) extra ray_remote_args
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return ds.map_batches(FileAnalyzer, **kwargs, max_restarts=ACTOR_MAX_RESTARTS,
                                  max_task_retries=ACTOR_MAX_TASK_RETRIES)
    except TypeError:  # a Ray without them: its own defaults (restarts and retries without limit)
        return ds.map_batches(FileAnalyzer, **kwargs)


def analyze_dataset(data: Any, model: str | os.PathLike | None = None, *, concurrency: int | None = None,
                    batch_size: int = DEFAULT_BATCH_SIZE, num_cpus: float = 1, threads: int = 1,
                    **analyzer_options: Any) -> Any:
    """Analyse images on Ray Data: a lazy ``ray.data.Dataset`` of the batch table's rows.

    Args:
        data: a ``ray.data.Dataset`` with a ``path`` (or ``item``) column of image paths, or a ``bytes`` column
            of encoded images (``ray.data.read_binary_files(folder, include_paths=True)``), or an iterable of
            paths.
        model: as :meth:`FaceAnalyzer.from_checkpoint` (None: the bundled default model, ONNX Runtime); loaded
            once per actor.
        concurrency: actors (None: as many as the cluster has CPUs / ``num_cpus``).
        batch_size: files per ``map_batches`` call.
        num_cpus: CPUs Ray reserves for each actor.
        threads: backend threads per actor.
        **analyzer_options: the rest of :meth:`FaceAnalyzer.from_checkpoint` (detector, tasks, min_face,
            max_faces, largest_only, flip_tta, ...).

    Returns:
        A Dataset whose columns are exactly :func:`facemtl._rows.csv_columns` (types as the batch Parquet file):
        one row per face, one per image without faces, one error row (``error`` set) per file that failed.
        Order is not kept; the ``file`` column names each row's file.

    Raises:
        MissingDependencyError: Ray is not installed (``pip install "facemtl[ray]"``).
    """
    _ray()
    if model is not None and os.path.exists(model):
        model = os.path.abspath(model)
    kwargs = {"path": model, "threads": threads, **analyzer_options}
    return packed_dataset(data, kwargs, concurrency=concurrency, batch_size=batch_size,
                          num_cpus=num_cpus).map_batches(_unpack, batch_format="pyarrow", batch_size=None)


# -- the command line: facemtl batch --engine ray -----------------------------------------------------------

PROBE_TIMEOUT_S = 5.0


def _probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast, with one message naming ``address``, when nothing listens at a ``HOST:PORT`` or
    ``ray://HOST:PORT`` Ray address (``auto`` and other forms are left to Ray)."""
    import socket

    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise FacemtlError(f"cannot connect to the Ray cluster at --ray-address {address}: {why}; is it running "
                           "(`ray start --head`) and reachable from here?") from None


def _check_positive(name: str, value: Any) -> None:
    """A count given (not None) must be a whole number >= 1 (the words of ``facemtl batch``'s ``--ray-*`` flags)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True)
class RayOptions:
    """Where and how :class:`RayEngine` runs: the ``--ray-*`` flags of ``facemtl batch --engine ray`` (and the
    keys of its ``--config`` file). Frozen: change a copy with ``dataclasses.replace`` (checked again).

    Attributes:
        ray_address: connect to this running Ray cluster (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None or
            empty: start a local Ray for the run.
        ray_cpus: CPUs of the local Ray (None: all).
        ray_concurrency: actors, each with one model (None: one per CPU of the Ray cluster / CPUs per actor).
        ray_batch_size: files per actor call (None: ``DEFAULT_BATCH_SIZE``, 16).
    """

    ray_address: str | None = None
    ray_cpus: int | None = None
    ray_concurrency: int | None = None
    ray_batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("ray_cpus", "ray_concurrency", "ray_batch_size"):
            _check_positive(name, getattr(self, name))


class RayEngine:
    """``facemtl batch --engine ray``: starts a local Ray (``ray_cpus``) or connects to ``ray_address`` when
    built (one clear error if it cannot), then :meth:`results` yields ``(text, n_faces, failed)`` per file as
    the actors finish them, the text as the local batch writes it; :meth:`close` stops a Ray it started.

    Args:
        analyzer_kwargs: the keyword arguments of :meth:`FaceAnalyzer.from_checkpoint` each actor loads its
            model with (``path`` None or absent: the bundled default model; ``threads`` None: 1 per actor).
        options: where Ray runs and how the work is split (:class:`RayOptions`).
        jsonl: the text of each file is its JSON Lines record (else its CSV rows).
        quiet: the actors' output is not forwarded to this process and Ray Data logs only errors.
    """

    def __init__(self, analyzer_kwargs: dict[str, Any], options: RayOptions, jsonl: bool = False,
                 quiet: bool = False) -> None:
        import logging

        from .models.load import resolve_weights

        ray = _ray()
        self.options, self.jsonl, self.started = options, jsonl, False
        kwargs = dict(analyzer_kwargs)
        path, _ = resolve_weights(kwargs.get("path"))  # a bad model: one error before Ray starts
        kwargs["path"] = str(os.path.abspath(path))
        kwargs["threads"] = kwargs.get("threads") or 1
        self.kwargs = kwargs
        address = options.ray_address
        if address:
            _probe(address)  # Ray itself retries an unreachable address for minutes
        if not ray.is_initialized():
            opts: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                    "log_to_driver": not quiet}
            try:
                if address:
                    ray.init(address=address, **opts)
                else:
                    ray.init(address="local", num_cpus=options.ray_cpus, **opts)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError...: one message
                where = f"the Ray cluster at --ray-address {address}" if address else "a local Ray"
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                hint = "; is it running (`ray start --head`) and reachable from here?" if address else ""
                raise FacemtlError(f"cannot connect to {where}: {why}{hint}") from None
            self.started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the command's own bar counts files
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.WARNING)

    def results(self, files: list[str]) -> Iterator[tuple[str, int, bool]]:
        from ._rows import rows_text

        columns = csv_columns()
        ds = packed_dataset(files, self.kwargs, concurrency=self.options.ray_concurrency,
                            batch_size=self.options.ray_batch_size or DEFAULT_BATCH_SIZE, jsonl=self.jsonl)
        ray = _ray()
        done = 0
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for rec in batch.to_pylist():
                    text = rec["record"] if self.jsonl else rows_text(json.loads(rec["rows"]), columns)
                    yield text, int(rec["n_faces"]), bool(rec["failed"])
                    done += 1
        except ray.exceptions.RayError as exc:  # actors that kept dying (retries spent), a lost node...
            why = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise FacemtlError(f"the Ray run stopped after {done} of {len(files)} file(s): {type(exc).__name__}: "
                               f"{why[:300]}; the {done} written are kept: rerun the same command to resume the "
                               "rest") from None

    def close(self) -> None:
        if self.started:
            _ray().shutdown()
            self.started = False

