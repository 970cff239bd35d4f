"""Support shared by tests/ and benchmarks/, not part of the installed harness: a real local Ray
cluster of ``ray start`` nodes in namespaces of their own (``support.local_cluster``)."""
