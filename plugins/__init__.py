"""Backends bundled with phasekit: SQL stores and the logging and webhook notifiers.

Each module is a plugin loaded through its entry point, written against the public API of
``statemachine`` only, exactly as a third-party plugin would be.
"""
