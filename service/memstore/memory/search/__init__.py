"""Search (recall) on the universal path: a per-replica, per-namespace index kept current
by the change log (``index``), BM25 and filters from ``memstore.core``, vectors and their
exact scan (``vectors``), rankings, fusion and cursors (``ranking``), and the per-process
registry with the background embedding task that the manager owns (``service``)."""
