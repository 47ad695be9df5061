"""Chaos strategies for a tool's attempts: faults, latency and made-up outcomes.

Attach them to a spec (``spec.chaos = [...]``) to rehearse failures on the real call
path: each strategy wraps one attempt, inside its ``timeout_s`` and its breaker, so an
injected fault is that attempt's failure (recorded by the breaker, retried by the retry
policy) and injected latency counts against the attempt's time. The first strategy of
the list is outermost. Each takes ``rng=`` (a ``random.Random``: seed it for a run you
can repeat) and ``enabled=`` (False: it never hits, e.g. outside a game day).

Example::

    import random
    from toolvisor.testing.chaos import ChaosFault, ChaosLatency

    rng = random.Random(7)
    spec.chaos = [ChaosLatency(0.2, 1.5, rng=rng), ChaosFault(0.1, ConnectionError, rng=rng)]
"""

from toolvisor._chaos import ChaosFault as ChaosFault
from toolvisor._chaos import ChaosLatency as ChaosLatency
from toolvisor._chaos import ChaosOutcome as ChaosOutcome
from toolvisor._chaos import ChaosStrategy as ChaosStrategy

__all__ = ["ChaosFault", "ChaosLatency", "ChaosOutcome", "ChaosStrategy"]
