"""Integrations on the app's Redis: pub/sub, RQ job queues and the Socket.IO
client manager, and the Flask ecosystem's extensions: ``sessions``
(Flask-Session), ``limiter`` (Flask-Limiter), ``rq_dashboard`` and
``kombu_broker`` (Celery). Each imports its third-party library lazily or only
when its module is imported; the package itself imports none of them."""
