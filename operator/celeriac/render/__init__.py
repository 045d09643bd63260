"""Pure rendering: (spec, observed facts) -> desired Kubernetes objects as dicts.

The operator applies what these functions return; `celeriac render` prints it."""
