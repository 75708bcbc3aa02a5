r"""
Wasserstein-1 between two large sets streamed from disk
=======================================================

:func:`sklip.wasserstein_distance` with ``chunk_size`` never loads the two
sample sets: they stay in ``.npy`` files on disk, opened as memory maps, and
are read ``chunk_size`` rows at a time, first to train the critic (one
``partial_fit`` per chunk) and then to compute its dual value over every
sample. Memory holds one chunk and the network, whatever the number of rows.

The two sets are Gaussian clouds in 16 dimensions, one translated by a vector
of length 2, so the answer is known: :math:`W_1 = 2`. The default is 10
million rows per set (1.2 GB on disk, about two and a half minutes on two CPU
cores, writing the files included); the environment variable
``SKLIP_STREAMING_ROWS`` sets another number of rows per set.
"""

import os
import tempfile
import threading
import time

import matplotlib.pyplot as plt
import numpy as np

from sklip import wasserstein_distance

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size
N_ROWS = 20_000 if SMALL else int(os.environ.get("SKLIP_STREAMING_ROWS", 10_000_000))
CHUNK = 4_000 if SMALL else 500_000
DIMENSION, TRUE_DISTANCE = 16, 2.0

# %%
# Two sets on disk
# ----------------
# Each set is written block by block into a ``.npy`` file, so not even the
# writing needs the whole set in memory. The rows are independent draws, in
# random order: every chunk of rows samples the whole distribution.
directory = tempfile.TemporaryDirectory()
rng = np.random.RandomState(0)
shift = rng.normal(size=DIMENSION)
shift *= TRUE_DISTANCE / np.linalg.norm(shift)
paths = {}
for name, offset in (("P", 0.0), ("Q", shift)):
    paths[name] = os.path.join(directory.name, f"{name}.npy")
    out = np.lib.format.open_memmap(
        paths[name], mode="w+", dtype=np.float32, shape=(N_ROWS, DIMENSION)
    )
    for start in range(0, N_ROWS, 1_000_000):
        rows = min(1_000_000, N_ROWS - start)
        out[start : start + rows] = rng.normal(size=(rows, DIMENSION)) + offset
    out.flush()
    del out  # unmapped: written pages leave this process
data_mb = 2 * N_ROWS * DIMENSION * 4 / 2**20
print(f"{N_ROWS:,} rows per set, d = {DIMENSION}: {data_mb:,.0f} MB on disk")

# %%
# Streaming
# ---------
# A thread samples the process's resident set size (RSS) every 50 ms while
# the distance is computed.


def resident_mb():
    try:
        with open("/proc/self/statm") as statm:  # Linux: the current RSS
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # elsewhere: the peak so far, in kB (bytes on macOS)
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


trace, done = [], threading.Event()


def watch(started):
    while not done.wait(0.05):
        trace.append((time.perf_counter() - started, resident_mb()))


P = np.load(paths["P"], mmap_mode="r")  # memory maps: nothing is read yet
Q = np.load(paths["Q"], mmap_mode="r")
# The first fit of a process imports more of torch and sets up its thread
# pool and allocator (about 100 MB, once): a tiny fit pays for it beforehand.
wasserstein_distance(P[:1000], Q[:1000], max_epochs=1, early_stopping=False)
baseline = resident_mb()
started = time.perf_counter()
watcher = threading.Thread(target=watch, args=(started,), daemon=True)
watcher.start()
estimate = wasserstein_distance(P, Q, chunk_size=CHUNK, random_state=0)
seconds = time.perf_counter() - started
done.set()
watcher.join()
peak = max([baseline, *(rss for _, rss in trace)])
print(f"W1 estimate {estimate:.4f} (truth {TRUE_DISTANCE}), error {abs(estimate - 2) / 2:.2%}")
print(f"time {seconds:.1f} s; RSS {baseline:.0f} MB before, peak {peak:.0f} MB")
print(f"memory used while streaming: {peak - baseline:.0f} MB for {data_mb:,.0f} MB of data")

# %%
# Memory over time
# ----------------
# The resident set grows by a few times the size of one chunk (its copies on
# the way to the network) and then stays flat while the whole of both files
# goes through: first the training pass, then the pass that computes the dual
# value. It does not depend on the number of rows.
figure, ax = plt.subplots(figsize=(6.5, 3.5))
if trace:
    times, rss = zip(*trace, strict=True)
    ax.plot(times, rss, label="resident set size")
ax.axhline(baseline + data_mb, color="gray", linestyle="--", label="before + data size")
ax.set_xlabel("seconds")
ax.set_ylabel("MB")
ax.set_ylim(0, 1.1 * (baseline + data_mb))
ax.set_title(f"W1 between two sets of {N_ROWS:,} rows, streamed from disk")
ax.legend(loc="center right")
plt.show()
directory.cleanup()
