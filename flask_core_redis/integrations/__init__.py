"""Integrations on the app's Redis: pub/sub, RQ job queues and the Socket.IO
client manager. Each imports its third-party library lazily or only when used."""
