"""Remote calls: tools served by worker processes over Redis Streams (extra ``remote``).

``toolvisor worker MODULE:ATTR --redis URL`` runs a worker; :func:`open_remote` calls the
tools of a namespace's workers from any process. See ``docs/remote.md``.
"""

from ._client import Remote as Remote
from ._client import RemotePendingCall as RemotePendingCall
from ._client import open_remote as open_remote
from ._run import run_worker as run_worker
from ._worker import Worker as Worker
from ._worker import WorkerOptions as WorkerOptions

__all__ = ["Remote", "RemotePendingCall", "Worker", "WorkerOptions", "open_remote", "run_worker"]
