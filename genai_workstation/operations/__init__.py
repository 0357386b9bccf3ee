"""Custom pyinfra operations of the workstation step.

Each operation reads what it needs through the facts in ``facts/`` and yields only the commands
that are still needed, so a converged host plans zero changes. Checks that refuse a host are
operations too (they yield nothing and raise ``OperationError`` with the reason), which keeps
them testable with pyinfra-testing's JSON cases in ``tests/operations/``.
"""
