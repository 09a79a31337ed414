"""xent's benchmark harness: one set of cases, providers and one NumPy reference.

``python -m xent bench`` (from a source checkout) runs :mod:`benchmarks.run`;
``pytest benchmarks`` runs the pytest-benchmark suite on the same cases and
providers.  See ``benchmarks/README.md`` for the provider interface and the
results schema.
"""
