"""What every background process builds at start-up from the settings: the store, the VAPID signer."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal

from core.settings import Settings
from core.store import Store
from core.validation import HostPolicy
from core.vapid import Vapid, load_or_create_dev_key, load_private_key
from workers.transport import Transport

log = logging.getLogger("nabaa.worker")


def steady_malloc() -> None:
    """Keep TLS read buffers on the heap. uvloop (like asyncio) reads TLS data into a fresh 256 KiB buffer
    per read; glibc serves that size with mmap unless its adaptive threshold happens to have grown past it,
    and then every read costs an mmap, an mremap and a munmap (seen with strace on the benchmark's push
    service, where py-spy put 15 % of its CPU in those three calls). A fixed threshold of 1 MiB, and room
    to keep 8 MiB before trimming, make that never happen."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to set
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 1 << 20)
    mallopt(m_trim_threshold, 8 << 20)


def vapid_from(settings: Settings) -> Vapid:
    if settings.vapid_private_key_file is not None:
        key = load_private_key(settings.vapid_private_key_file)
    else:
        key = load_or_create_dev_key(settings.vapid_key_path)
    return Vapid(key, settings.contact)


def transport_from(settings: Settings) -> Transport:
    if settings.push_allow_insecure:
        log.warning("PUSH_ALLOW_INSECURE is on: listed push hosts may be http:// or private addresses "
                    "(for tests and local fake push services only)")
    return Transport(
        HostPolicy(tuple(settings.push_allowed_hosts), settings.push_allow_insecure),
        connect_timeout_s=settings.push_connect_timeout_s, read_timeout_s=settings.push_read_timeout_s,
        max_connections=settings.worker_concurrency, per_host_connections=settings.push_per_host_connections,
        ca_file=settings.push_ca_file,
    )


def on_stop_signals(stop) -> None:
    """SIGTERM and SIGINT ask the process to finish what it holds and exit."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):
            pass


async def run_worker(settings: Settings, *, burst: bool = False) -> None:
    from workers.delivery import Worker

    steady_malloc()
    store = await Store.open(settings.redis_url, settings.redis_prefix)
    transport = transport_from(settings)
    worker = Worker(settings, store, transport, vapid_from(settings), burst=burst)
    on_stop_signals(worker.stop)
    try:
        await worker.run()
    finally:
        await transport.close()
        await store.close()
