"""The garbage collector of a long-running process: what start-up loaded is set aside, once.

Once Django, torch, transformers and the apps are imported, a web or worker process tracks about half a
million container objects, and more once models are loaded. CPython's full collection walks every one of
them with the GIL held: 200 to 470 ms on this 2-core machine, during which no request of the process moves
(the full stack under load ran two such pauses a minute: ``bench/gc_pauses.py``). Those objects live as long
as the process, so walking them finds nothing. ``gc.freeze()`` moves every object tracked at that moment into
a permanent generation that collections skip; a full collection then walks only what the process made since.

``heap_settle`` collects once (so that no garbage of start-up is frozen with the rest) and freezes. Web
processes call it when ``core.asgi`` has built the application and again when the start-up warm-up has loaded
the active models; worker processes when theirs has. ``GC_FREEZE=0`` turns it off. Objects frozen are never
freed by the collector: a cycle made unreachable later among them stays (reference counting still frees
everything else), which is why only start-up's own objects are frozen.
"""

import gc

from django.conf import settings


def heap_settle() -> int:
    """Collect, then freeze what this process holds now; returns how many objects are frozen (0: off)."""
    if not settings.GC_FREEZE:
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
