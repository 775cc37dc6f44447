"""The cluster view's backends: YAML files (``--state``, the embedded default) and the live cluster
(list + watch), plus the object sources the one-off audit reads. Both feed the core's index."""
