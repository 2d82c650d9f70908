"""The queue test app, in a worker process whose RQ pub/sub thread is stuck:
its wait for a message never ends, as on a connection to a server that
stopped answering, so it never sees that it is asked to stop.
`flask --app tests.stuck_pubsub_app:create_app redis worker`."""

import threading

from redis.client import PubSub, PubSubWorkerThread

from .queue_app import create_app, redis_ext

__all__ = ["create_app", "redis_ext"]

NEVER = threading.Event()
_get_message = PubSub.get_message


def _stuck_in_a_pubsub_thread(self, *args, **kwargs):
    if isinstance(threading.current_thread(), PubSubWorkerThread):
        NEVER.wait()
    return _get_message(self, *args, **kwargs)


PubSub.get_message = _stuck_in_a_pubsub_thread
