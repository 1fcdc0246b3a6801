"""Scale-out on Ray: extraction with Ray Data actors, Gram statistics with Ray tasks.

Both give what one machine gives. Extraction: each actor loads CLIP and the teacher once and
computes whole shards (``ExtractionJob.run``, the local engine's own code); the shards come
back to the driver, which writes, resumes and assembles them exactly as the local engine does
(``extraction.extract``). Gram: one task per chunk of rows, summed in row order on the driver,
which repeats ``GramStats.from_arrays``'s float operations bit for bit.

Where things must live on a cluster:
* the images (and the CLIP checkpoint / teacher file) at the same path on every node;
* the workspace only where the driver runs (for ``ray job submit``: the head node), since
  workers hand their shards back instead of writing them; the Gram tasks read the concept
  matrix, so ``gram --engine ray`` needs the workspace on a path shared by every node.

Ray is imported only here, and only when one of these is used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..store.rows import read_rows
from ..students.gram import DEFAULT_CHUNK_ROWS, GramStats, GramSums, chunk_shifts

if TYPE_CHECKING:  # extraction imports torch; the Gram path and the errors here do not need it
    from .pipeline import ExtractionJob, ExtractorSpec


class RayUnavailable(RuntimeError):
    """Ray is not installed or no cluster could be reached; the message says what to do."""


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data ships in the ray[data] extra)
    except ImportError as exc:
        raise RayUnavailable(f"--engine ray needs Ray Data: pip install 'ray[data]' ({exc})") from None
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds on a host:port nobody answers on (Ray itself retries for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port; let Ray interpret it
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(
            f"Could not reach the Ray cluster at {address!r} ({exc}); check --address "
            "(the head node's GCS port, 6379 by default, or ray://head:10001)"
        ) from None


class ray_session:
    """Connect to Ray (``address`` as ``ray.init`` takes it; None starts a local instance) unless
    this process is already connected; disconnect on exit only if the connection was made here.

    ``ship_code`` sends this package to the workers (runtime_env py_modules), so a cluster needs
    only the requirements installed, not ConceptKD itself.
    """

    def __init__(self, address: str | None = None, ship_code: bool = True):
        self.address, self.ship_code, self.opened = address, ship_code, False

    def __enter__(self):
        ray = _ray()
        if not ray.is_initialized():
            runtime_env = {"py_modules": [str(Path(__file__).resolve().parent.parent)]} if self.ship_code else None
            _check_reachable(self.address)
            try:
                ray.init(
                    address=self.address,
                    runtime_env=runtime_env,
                    log_to_driver=False,
                    include_dashboard=False,
                    configure_logging=False,
                )
            except ConnectionError as exc:
                raise RayUnavailable(f"Could not reach the Ray cluster at {self.address!r}: {exc}") from None
            self.opened = True
        return ray

    def __exit__(self, *exc_info):
        if self.opened:
            _ray().shutdown()


class _ShardWorker:
    """A Ray Data actor: CLIP and the teacher loaded once, then the local engine's pipeline over the
    shards of each call (``ExtractionJob.shards``), its images prepared by ``workers`` processes that
    live as long as the actor."""

    def __init__(self, spec: ExtractorSpec, job: ExtractionJob, device: str, threads: int, workers: int):
        import torch

        torch.set_num_threads(max(1, threads))  # one actor per CPU slot: no oversubscription
        self.clip = spec.load_clip(device)
        self.teacher = spec.make_teacher(self.clip, job.images)
        self.job = job
        self.preparer = job.preparer(self.clip, self.teacher, workers)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .pipeline import shard_bytes

        done = self.job.shards(self.clip, self.teacher, [int(s) for s in batch["start"]], self.preparer)
        starts, shards = zip(*((start, shard_bytes(shard)) for start, shard in done), strict=True)
        return {"start": np.asarray(starts, dtype=np.int64), "shard": np.asarray(shards, dtype=object)}


@dataclass(frozen=True)
class RayEngine:
    """An extraction engine (see ``extraction.Engine``) that runs the shards on a Ray cluster.

    spec : how each actor builds CLIP and the teacher (paths must exist on every node)
    address : Ray cluster address ("auto", "ray://head:10001", …); None: this process's
        connection, or a new local instance
    num_actors : actors in the pool; default: the cluster's GPUs / num_gpus, else CPUs / num_cpus
    num_gpus, num_cpus : resources of one actor (an actor with a GPU runs CLIP on "cuda");
        num_gpus None: one GPU per actor when the cluster has GPUs, else none
    """

    spec: ExtractorSpec
    address: str | None = None
    num_actors: int | None = None
    num_gpus: float | None = None
    num_cpus: float = 1.0
    ship_code: bool = True

    def _gpus_per_actor(self, ray) -> float:
        if self.num_gpus is not None:
            return float(self.num_gpus)
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    def _pool_size(self, ray, gpus: float, pending: int) -> int:
        if self.num_actors:
            return max(1, min(self.num_actors, pending))
        resources = ray.cluster_resources()
        if gpus > 0:
            fits = int(resources.get("GPU", 0) // gpus)
            if fits < 1:
                raise RayUnavailable(f"The Ray cluster has no GPU for actors asking {gpus} GPU each")
        else:
            fits = int(resources.get("CPU", 1) // self.num_cpus)
        return max(1, min(fits, pending))

    def __call__(self, job: ExtractionJob, starts: Sequence[int]) -> Iterator[tuple[int, dict]]:
        from .pipeline import shard_from_bytes

        if not starts:
            return
        with ray_session(self.address, self.ship_code) as ray:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # extract() reports progress as shards arrive
            context.enable_auto_log_stats = False
            gpus = self._gpus_per_actor(ray)
            size = self._pool_size(ray, gpus, len(starts))
            device = "cuda" if gpus > 0 else "cpu"
            # An accelerator's actor gets CPUs to prepare images (all but one) and several shards a
            # call, so its workers prepare the next while the model runs; a CPU actor's CPUs run torch.
            workers = max(0, int(self.num_cpus) - 1) if gpus > 0 else 0
            items = ray.data.from_items([{"start": int(s)} for s in starts], override_num_blocks=len(starts))
            shards = items.map_batches(
                _ShardWorker,
                batch_size=max(1, workers),
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=size),
                fn_constructor_kwargs={
                    "spec": self.spec,
                    "job": job,
                    "device": device,
                    "threads": max(1, int(self.num_cpus)),
                    "workers": workers,
                },
                num_cpus=self.num_cpus,
                num_gpus=gpus or None,
            )
            for row in shards.iter_rows():
                yield int(row["start"]), shard_from_bytes(row["shard"])


def gram_stats_on_ray(
    concepts_path: str | os.PathLike,
    teacher_logits: np.ndarray,
    *,
    address: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ship_code: bool = True,
    rows: np.ndarray | None = None,
) -> GramStats:
    """``GramStats.from_arrays(concepts, teacher_logits, rows=rows)`` with one Ray task per chunk of rows.

    Every task memory-maps ``concepts_path`` (a workspace's concepts.npy: it must be on a path
    every node sees) and returns its chunk's ``GramSums``; the driver adds them in row order.
    """
    concepts_path = str(Path(concepts_path).resolve())
    X = np.load(concepts_path, mmap_mode="r")
    Y = np.asarray(teacher_logits)
    keep = np.ones(X.shape[0], dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    shift_x, shift_y = chunk_shifts(X, Y, chunk_rows)
    with ray_session(address, ship_code) as ray:

        @ray.remote(num_cpus=1)
        def chunk_sums(start: int, y_chunk: np.ndarray, keep_chunk: np.ndarray) -> GramSums:
            chunk = read_rows(np.load(concepts_path, mmap_mode="r"), start, start + len(y_chunk))
            return GramSums.of_chunk(chunk[keep_chunk], y_chunk[keep_chunk], shift_x, shift_y)

        # Each task gets only its own rows of Y; the chunks are summed in row order.
        refs = [
            chunk_sums.remote(start, Y[start : start + chunk_rows], keep[start : start + chunk_rows])
            for start in range(0, X.shape[0], chunk_rows)
        ]
        total = GramSums.zeros(X.shape[1], Y.shape[1])
        for ref in refs:
            total += ray.get(ref)
    return GramStats.from_sums(total, shift_x, shift_y)
