"""Integrations with third-party libraries, one module each, each a function
that takes the extension first: ``queues`` (RQ), ``socketio_manager``
(python-socketio), ``sessions`` (Flask-Session), ``limiter``
(Flask-Limiter), ``kombu_broker`` (Celery's kombu) and ``rq_dashboard``;
``worker`` is what ``flask redis worker`` runs. Each module says which
library it needs and imports it lazily or only when the module itself is
imported; the package imports none of them."""
