"""A node agent that runs pods as local processes (development and tests only).

It plays the kubelet's role for the local control plane: it registers Nodes,
runs every Pod the scheduler binds to them as ordinary processes (one network
namespace per pod, a private mount namespace per container) for a documented
table of images, and reports their status. It is not a container runtime and
gives no isolation worth the name: never use it in production.

Start it with `python -m celeriac.localnode` or `celeriac.localnode.launcher.LocalNode`.
"""
