"""The ``headcount`` command line: :func:`headcount.cli.main.main`, and one
module per command group. Heavy layers are imported inside the handlers, so
``headcount --version`` starts fast.
"""
