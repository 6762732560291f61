"""Who can reach whom: full mesh, LAN clusters behind a relay, a line, a random graph.

A topology is fixed by its kind, its size and (for the random graph) the
"topology" random stream. It answers three questions: a node's neighbours
(the peers its gossip may pick), the link physics between two neighbours
(LAN or WAN), and where a node that joins later is wired in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .network import LAN, WAN, LinkParams

KINDS = ("mesh", "clusters", "line", "random")


class _AllBut(Sequence[int]):
    """``range(n)`` without ``i``, in O(1) memory (a full mesh's neighbours)."""

    def __init__(self, topo: Topology, i: int) -> None:
        self._topo, self._i = topo, i

    def __len__(self) -> int:
        return self._topo.n - 1

    def __getitem__(self, k: int) -> int:  # type: ignore[override]
        if not 0 <= k < len(self):
            raise IndexError(k)
        return k + (k >= self._i)


class Topology:
    """Neighbour lists and link kinds of ``n`` nodes.

    Args:
        kind: one of :data:`KINDS`.
        n: number of nodes at the start.
        rng: the "topology" stream (random graph wiring, joins).
        clusters: number of LAN clusters (``clusters``): node 0 is the relay,
            the only node every cluster reaches (over WAN links); the other
            nodes are split into contiguous clusters that reach only their own
            cluster and the relay.
        degree: mean degree of the random graph (a random spanning tree plus
            random extra edges; always connected).
    """

    def __init__(
        self, kind: str, n: int, rng: random.Random, clusters: int = 4, degree: int = 6
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown topology {kind!r} (one of {', '.join(KINDS)})")
        if n < 2:
            raise ValueError("a network needs at least two nodes")
        self.kind = kind
        self.n = n
        self.rng = rng
        self.degree = max(1, degree)
        self.relay: int | None = 0 if kind == "clusters" else None
        self.cluster_of: list[int] = []
        self._adj: list[list[int]] = []
        if kind == "clusters":
            self._build_clusters(max(1, min(clusters, n - 1)))
        elif kind == "line":
            self._adj = [[j for j in (i - 1, i + 1) if 0 <= j < n] for i in range(n)]
        elif kind == "random":
            self._build_random()

    # -- construction ---------------------------------------------------

    def _build_clusters(self, clusters: int) -> None:
        gates = self.n - 1
        self.cluster_of = [-1] + [(i - 1) * clusters // gates for i in range(1, self.n)]
        members: list[list[int]] = [[] for _ in range(clusters)]
        for i in range(1, self.n):
            members[self.cluster_of[i]].append(i)
        self._adj = [list(range(1, self.n))]
        for i in range(1, self.n):
            self._adj.append([0, *(j for j in members[self.cluster_of[i]] if j != i)])

    def _build_random(self) -> None:
        rng, n = self.rng, self.n
        self._adj = [[] for _ in range(n)]
        edges: set[tuple[int, int]] = set()
        for i in range(1, n):
            self._edge(edges, rng.randrange(i), i)
        target = min(n * self.degree // 2, n * (n - 1) // 2)
        while len(edges) < target:
            a, b = rng.randrange(n), rng.randrange(n)
            if a != b:
                self._edge(edges, a, b)

    def _edge(self, edges: set[tuple[int, int]], a: int, b: int) -> None:
        key = (min(a, b), max(a, b))
        if key not in edges:
            edges.add(key)
            self._adj[a].append(b)
            self._adj[b].append(a)

    # -- queries --------------------------------------------------------

    def neighbours(self, i: int) -> Sequence[int]:
        if self.kind == "mesh":
            return _AllBut(self, i)
        return self._adj[i]

    def pick(self, rng: random.Random, i: int, k: int) -> list[int]:
        """``k`` distinct random neighbours of ``i`` (fewer if it has fewer)."""
        if self.kind == "mesh" and k == 1:
            j = rng.randrange(self.n - 1)
            return [j + (j >= i)]
        nbrs = self.neighbours(i)
        return rng.sample(nbrs, min(k, len(nbrs))) if nbrs else []

    def link(self, a: int, b: int) -> LinkParams:
        return WAN if self.relay is not None and self.relay in (a, b) else LAN

    def writers(self) -> list[int]:
        """Nodes that may write (every node but the relay)."""
        return [i for i in range(self.n) if i != self.relay]

    # -- churn ----------------------------------------------------------

    def add_node(self) -> int:
        """Wire in one more node; returns its index."""
        i = self.n
        self.n += 1
        if self.kind == "mesh":
            return i
        if self.kind == "clusters":
            c = self.rng.randrange(max(self.cluster_of) + 1)
            peers = [j for j in range(1, i) if self.cluster_of[j] == c]
            self.cluster_of.append(c)
            self._adj.append([0, *peers])
            self._adj[0].append(i)
            for j in peers:
                self._adj[j].append(i)
            return i
        self._adj.append([])
        if self.kind == "line":
            picks = [i - 1]
        else:
            picks = self.rng.sample(range(i), min(i, max(1, self.degree // 2)))
        for j in picks:
            self._adj[i].append(j)
            self._adj[j].append(i)
        return i
