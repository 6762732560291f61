"""What the tests share. Test modules (``test_*.py``) import from here, never
from one another (``test_suite_habits.py`` keeps that true).

- ``clock``: the fixed wall time ``T0`` and a :class:`FakeClock`.
- ``wait``: the one way to wait for a condition (:func:`wait_until`,
  :func:`await_until`, :class:`Pulse`); never a bare ``sleep``.
- ``seeds``: a randomized run names its seed when it fails.
- ``sync``: in-process replication between replicas.
- ``replicas``: replicas that trust each other, and what they read.
- ``protocol``: in-memory devices and h11-style connection pairs.
- ``devices`` and ``nodes``: enrolled devices and their TLS nodes on 127.0.0.1.
- ``backup``, ``cli``, ``relay_api``, ``convergence``: the helpers of those
  families of tests.
- ``store_conformance`` and ``transport_conformance``: the shared suites every
  store configuration and every transport pass.
- ``crash_worker.py`` and ``discovery_worker.py``: scripts the tests run as
  subprocesses.
"""
