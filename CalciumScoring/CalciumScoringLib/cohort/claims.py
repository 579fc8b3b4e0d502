"""One process per case, and files that appear whole: what keeps a shared output folder sound.

Several runs may write into one output folder at once (two users, a restarted job beside
a slow one, Dask workers on many machines).  Each case is *claimed* before it is
processed: an exclusive, non-blocking ``flock`` on ``OUTPUT/.claims/<case>.lock``.  The
operating system releases it when the process ends, however it ends (SIGKILL and a
dead node's NFSv4 lease included), so a claim never outlives its holder and never needs
a timeout.  A process that cannot claim a case leaves it to the holder.  Holding the
claim, a process removes what a killed predecessor left of that case (its
``.tmp-<case>-<pid>`` folder) before it starts.  On file systems without working
``flock`` (some Lustre or old NFS mounts) run one cohort per output folder.

``write_atomic`` writes a file next to its destination and renames it into place, so a
reader (or a second run writing the same cohort table) never sees half a file.
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

try:  # POSIX
    import fcntl

    def _try_lock(f):
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
except ImportError:  # Windows
    import msvcrt

    def _try_lock(f):
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

CLAIMS = ".claims"
TMP_PREFIX = ".tmp-"


def tmp_folder(out_root, case_id):
    """The folder a case is written into before it is renamed to ``OUTPUT/<case>/``."""
    return Path(out_root) / f"{TMP_PREFIX}{case_id}-{os.getpid()}"


def leftovers(out_root, case_id):
    """Temporary folders of ``case_id`` in ``out_root`` (any process's)."""
    return sorted(Path(out_root).glob(f"{TMP_PREFIX}{case_id}-*"))


@contextmanager
def claim(out_root, case_id):
    """Hold the claim on ``case_id`` for the ``with`` block; yields True when this process
    holds it, False when another live process does (then do nothing with the case).
    Holding it, the leftovers of killed predecessors are removed first."""
    folder = Path(out_root) / CLAIMS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{case_id}.lock", "a+") as f:
        mine = _try_lock(f)
        if mine:
            for stale in leftovers(out_root, case_id):
                shutil.rmtree(stale, ignore_errors=True)
        yield mine  # closing the file releases the lock


def sweep(out_root, case_ids):
    """Remove the leftovers of every case in ``case_ids`` that no live process holds;
    returns the number of cases cleaned."""
    removed = 0
    for cid in case_ids:
        if leftovers(out_root, cid):
            with claim(out_root, cid) as mine:
                removed += int(mine)
    return removed


def write_atomic(path, write):
    """Call ``write(tmp_path)``, then rename the result onto ``path`` in one step."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
