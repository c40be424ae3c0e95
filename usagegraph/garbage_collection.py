"""How a serving process sets up Python's cyclic garbage collector once it has started.

The collector's full passes traverse every container object the process holds. A worker
holds ~180,000 that live as long as it does (the loaded modules, the schema, the plans), so
with Python's defaults a full pass ran every ~8 requests of issue 14's events question and
took 100-150 ms: the slow tenth of every latency figure. Freezing what exists once the app
has started moves those objects out of the collector's sight (they are never garbage), and a
larger young generation collects less often while a request's own objects are still in use.
The other half is not making cyclic garbage in the first place (datasources.loaders.Loaders
.close): then reference counting frees a request's objects and the collector finds little.
"""

from __future__ import annotations

import gc

# Python's defaults are (700, 10, 10); only the young threshold is a setting.
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100

_settled = False


def settle_heap(young_threshold: int) -> None:
    """Freeze the started process's objects and set the thresholds; 0 leaves Python's
    defaults. Once per process: freezing again would also freeze the objects of requests
    in flight, which could then never be collected."""
    global _settled
    if young_threshold <= 0 or _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, MIDDLE_THRESHOLD, OLD_THRESHOLD)
