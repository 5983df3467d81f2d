"""The Ray engine: long-lived actors keep the model warm; the driver feeds them and records.

One :class:`FarmActor` per GPU (or per ``cpus_per_worker`` CPU cores) runs
``worker.execute_group`` for each group of items it is handed; its process
keeps the loaded model between groups. The driver keeps at most
``in_flight_per_worker`` groups queued per actor (``ray.wait``), so a dead
worker never holds more than that. When an actor or its node dies, the
groups it held come back to the queue and go to another actor (Ray restarts
the dead one); an item that kills workers ``max_attempts`` times is recorded
as failed. An item is never lost (every one is either yielded or requeued)
and never recorded twice: outputs are written atomically under the item's
name, so a retry replaces a half-done attempt's files instead of adding
copies, and the driver records completion once per item.

Workers write into the output folder directly, so on a cluster it must be
the same path on every node (a shared or synced folder); so must a model
given as a local folder. The package reaches the workers as a Ray
``py_modules`` entry; its dependencies (torch, diffusers...) must be
installed on every node.

``ray`` is an optional dependency (the ``[farm]`` extra); without it this
engine raises :class:`~.errors.DependencyError` saying what to install.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import CancelledError, ConfigError, DependencyError
from ..system.requirements import RAY_REQUIREMENT
from .plan import Item
from .worker import Outcome, default_group_rows, execute_group, prepare_folder, worker_label

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # blender_img3d/
WAIT_S = 0.25  # how often the driver looks at the cancel flag while it waits


def import_ray() -> Any:
    """``ray``, or a :class:`DependencyError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DependencyError(
            f"The Ray engine needs Ray: pip install '{RAY_REQUIREMENT}' "
            "(or the package's [farm] extra), or run the batch with --engine local."
        ) from None
    return ray


class FarmActor:
    """The body of a Ray actor: one warm model per process, groups run one after another."""

    def __init__(self, log_level: int = logging.WARNING) -> None:
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")

    def pid(self) -> int:
        return os.getpid()

    def label(self) -> str:
        return worker_label()

    def group_rows(self, device: str) -> int:
        return default_group_rows(device)

    def run(self, items: list[Item]) -> list[Outcome]:
        return execute_group(items)


class RayEngine:
    """Groups of items on Ray actors; see the module docstring for the guarantees."""

    name = "ray"

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        workers: Optional[int] = None,
        cpus_per_worker: int = 1,
        gpus_per_worker: Optional[float] = None,
        in_flight_per_worker: int = 2,
        max_attempts: int = 3,
        init_options: Optional[dict[str, Any]] = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be 1 or more, got {workers}.")
        if cpus_per_worker < 1:
            raise ConfigError(f"--cpus-per-worker must be 1 or more, got {cpus_per_worker}.")
        self.ray = import_ray()
        self.address = address
        self._owns_runtime = False
        self._init(init_options or {})
        resources = self.ray.cluster_resources()
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if workers is None:
            if gpus_per_worker:
                workers = int(resources.get("GPU", 0) // gpus_per_worker)
            else:
                workers = int(resources.get("CPU", 1) // cpus_per_worker)
        self.workers = max(1, workers)
        self.max_attempts = max(1, max_attempts)
        self.max_in_flight = self.workers * max(1, in_flight_per_worker)
        actor_class = self.ray.remote(
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=-1,  # Ray brings a dead worker back; its groups go elsewhere meanwhile
            max_task_retries=0,  # the driver retries, on another actor
        )(FarmActor)
        level = logging.getLogger("blender_img3d").getEffectiveLevel()
        self.actors = [actor_class.remote(level) for _ in range(self.workers)]
        self._unfinished: dict[int, list[Item]] = {}  # groups handed out and not yet back
        log.info(
            "Ray engine: %d workers (%s GPU, %d CPU each)",
            self.workers,
            gpus_per_worker,
            cpus_per_worker,
        )

    def _init(self, options: dict[str, Any]) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        runtime_env = {"py_modules": [str(PACKAGE_DIR)]}
        try:
            ray.init(
                address=self.address,
                runtime_env=runtime_env,
                include_dashboard=False,
                log_to_driver=logging.getLogger("blender_img3d").isEnabledFor(logging.INFO),
                **options,
            )
        except ConnectionError as error:
            raise ConfigError(
                f"Can't reach a Ray cluster at {self.address}: {error}. Start one with "
                "'ray start --head' (or leave out --address for a local Ray)."
            ) from None
        self._owns_runtime = self.address is None

    def worker_pids(self) -> list[int]:
        """The actors' process ids (for tests and diagnostics)."""
        return self.ray.get([actor.pid.remote() for actor in self.actors])

    def group_rows(self, device: str) -> int:
        # All workers are assumed alike: ask one.
        return int(self.ray.get(self.actors[0].group_rows.remote(device)))

    def run(self, groups: list[list[Item]], cancel: Optional[threading.Event]) -> Iterator[Outcome]:
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        lost_worker = (RayActorError, WorkerCrashedError)
        queue = collections.deque((group, 0) for group in groups)
        in_flight: dict[Any, tuple[int, list[Item], int]] = {}
        load = [0] * len(self.actors)
        avoid: dict[int, int] = {}  # id(group) -> actor that died on it
        while queue or in_flight:
            while queue and len(in_flight) < self.max_in_flight:
                group, attempts = queue.popleft()
                index = self._pick(load, avoid.get(id(group)))
                ref = self.actors[index].run.remote(group)
                in_flight[ref] = (index, group, attempts)
                self._unfinished[id(group)] = group
                load[index] += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
            if cancel is not None and cancel.is_set():
                raise CancelledError()
            for ref in ready:
                index, group, attempts = in_flight.pop(ref)
                load[index] -= 1
                self._unfinished.pop(id(group), None)
                try:
                    outcomes = ray.get(ref)
                except lost_worker as error:
                    attempts += 1
                    names = ", ".join(item.name for item in group)
                    if attempts >= self.max_attempts:
                        log.warning("Giving up on %s: its worker died %d times.", names, attempts)
                        for item in group:
                            yield Outcome(
                                item.name,
                                ok=False,
                                error_type="WorkerDiedError",
                                message=f"its worker died {attempts} times while making it "
                                f"(last: {type(error).__name__}); it may need more memory",
                            )
                        continue
                    log.warning("A worker died during %s; retrying on another.", names)
                    avoid[id(group)] = index
                    queue.appendleft((group, attempts))
                    continue
                except RayTaskError as error:
                    for item in group:
                        yield Outcome(
                            item.name, ok=False, error_type="RayTaskError", message=str(error)
                        )
                    continue
                yield from outcomes

    def _pick(self, load: list[int], avoid: Optional[int]) -> int:
        """The least-loaded actor, other than ``avoid`` where there is a choice."""
        candidates = [i for i in range(len(self.actors)) if i != avoid] or [avoid or 0]
        return min(candidates, key=lambda i: load[i])

    def close(self) -> None:
        """Stop the actors (ending whatever they still run) and a Ray runtime we started."""
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        # A killed writer can leave a temporary file (never a partial output): drop them.
        for group in self._unfinished.values():
            for item in group:
                prepare_folder(item.folder)
        self._unfinished.clear()
        if self._owns_runtime:
            self.ray.shutdown()
