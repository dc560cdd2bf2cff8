"""The ``ptmdd`` command line: its commands (:mod:`.commands`, the entry point ``main``), the
per-method options and shared printing (:mod:`.options`) and the checks that span options
(:mod:`.checks`). The top layer: nothing in the package imports it."""
