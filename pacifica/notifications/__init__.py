"""Pacifica Notifications: route data-availability CloudEvents to subscribers."""

__version__ = '1.0.0'
