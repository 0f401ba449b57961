"""gunicorn settings for the gateway, overridable by environment."""

import os

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
# Each thread keeps its own RPC proxy (see gateway/rpc.py), so threads × workers AMQP clients.
threads = int(os.environ.get("GATEWAY_THREADS", "8"))
timeout = 30
# Each worker's heartbeat touches a file on every loop: on a disk-backed folder that took 7% of
# the gateway's busy time under load (py-spy) and can block; tmpfs makes it free (gunicorn's
# FAQ advises the same for containers).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("GATEWAY_ACCESS_LOG") or None
# gunicorn's usual line, with how long the answer took and the request id it carried.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("GATEWAY_LOG_LEVEL", "info")


def post_worker_init(worker) -> None:
    """Once a worker has loaded the app, freeze its start-up heap (see shared/heap.py)."""
    from shared.heap import settle_heap

    settle_heap()
