"""Cohorts on a Dask cluster: ``vascular-calcium run ... --scheduler ADDRESS|local:N``.

Each case is one Dask task running :func:`.runner.process_case` (so outputs, resumability,
claims and error records are those of a local run).  What Dask adds:

- load balancing over any number of workers and machines (``tcp://host:8786``, e.g. a
  ``dask-jobqueue`` SLURMCluster's ``scheduler_address``), or a ``LocalCluster`` of N
  worker processes (``local:N``), one thread each;
- a case whose worker *died* (killed, out of memory, node lost) is run again on another
  worker by Dask itself, at most ``allowed_failures`` times (Dask's
  ``distributed.scheduler.allowed-failures``; the scheduler's own setting for a remote
  cluster), then recorded as failed;
- a case that fails by itself (bad input) is not an exception for Dask:
  ``process_case`` records it in ``<case>.error.json`` and returns, so it is never retried;
- each worker process loads a network once and keeps it (the cache of
  :func:`CalciumScoringLib.segmentation.engine.load_network`), not once per case.

Workers and threads: each worker runs one case at a time (one Dask thread) and the case
may use the worker's share of the cores (OpenMP/BLAS set to cores / N for ``local:N``;
``--threads`` for the networks).  Most of a case without networks is single-threaded
(on 2 cores, 8 small phantom cases: ``--workers 2`` 1.9x the rate of ``--workers 1``), so
start with one worker per 1-2 cores and about 4 GB of memory per worker for a 512x512x500
CT with both networks; ``scripts/benchmark_cohort.py`` measures a machine.
"""

import os
import uuid

INSTALL_HINT = ("running on a Dask cluster needs the optional packages dask and distributed: "
                "pip install 'vascular-calcium[dask]'")
ALLOWED_FAILURES = 2


def connect(scheduler, allowed_failures=ALLOWED_FAILURES):
    """``(client, cluster)`` for a scheduler address, or for ``local:N`` a new LocalCluster
    of N single-threaded worker processes (``cluster`` is None for an address)."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise RuntimeError(INSTALL_HINT) from exc
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--scheduler {scheduler!r}: use local:N with N >= 1 workers")
        # one task per worker, but each task may use the worker's share of the cores (Dask
        # would otherwise pin OpenMP/BLAS to one thread), and glibc's own malloc trimming
        # (Dask's 64 kB threshold makes every large image array a fresh mmap: slower)
        share = str(max(1, (os.cpu_count() or 1) // n))
        environ = {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share,
                   "OPENBLAS_NUM_THREADS": share}
        with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures,
                              "distributed.nanny.pre-spawn-environ": environ,
                              # its 10 ms stack sampling holds the GIL: 20-30 % of a case
                              "distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        return Client(cluster), cluster
    if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ValueError(f"--scheduler {scheduler!r}: give a Dask scheduler address "
                         "(tcp://host:8786) or local:N")
    return Client(scheduler, timeout="30s"), None


def run_on_dask(task, cases, out_root, options, scheduler, log=print):
    """Submit ``task(case, out_root, options)`` (:func:`.runner.process_case`) for every case
    (a dict of :class:`.runner.Case` fields) and yield each summary as it completes; a case
    whose workers kept dying yields a ``failed`` summary."""
    from dask.distributed import as_completed
    from distributed.scheduler import KilledWorker

    client, cluster = connect(scheduler)
    try:
        n = len(client.scheduler_info().get("workers", {}))
        log(f"Dask scheduler {client.scheduler.address}: {n} worker(s)")
        run = uuid.uuid4().hex[:8]
        futures = {client.submit(task, c, out_root, options, pure=False,
                                 key=f"vascular-calcium-{run}-{c['case_id']}"): c["case_id"]
                   for c in cases}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except KilledWorker as exc:
                yield {"case_id": futures[fut], "status": "failed",
                       "error": f"its worker died each time it ran ({exc})"}
            except Exception as exc:  # the cluster, not the case (process_case never raises)
                yield {"case_id": futures[fut], "status": "failed",
                       "error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
