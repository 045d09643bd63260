"""Deliberately wrong broker settings for wrongapp."""

broker_url = "redis://broker.invalid:6390/5"
result_backend = "redis://broker.invalid:6390/6"
broker_transport_options = {"master_name": "not-the-master", "priority_steps": [0, 5, 9]}
worker_prefetch_multiplier = 8
worker_hijack_root_logger = False
