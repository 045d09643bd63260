"""The autoscaler's core: kombu key names, the busy reporter shipped into worker
pods, one pipelined backlog measurement per broker, the pure scaling policy and
the poller that measures every registered pool."""
