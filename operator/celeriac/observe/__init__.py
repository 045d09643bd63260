"""Talking to Redis and Sentinel: topology and events. Decisions stay pure."""
