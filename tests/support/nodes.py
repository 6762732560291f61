"""TLS nodes on 127.0.0.1 for enrolled devices, and pulses of what they do."""

from __future__ import annotations

import time

from headcount import Replica
from headcount.net.node import Node, NodeConfig
from headcount.pki.device import load_device_certificate, ssl_context
from headcount.pki.verify import verify_peer_certificate

from .wait import Pulse

GOSSIP_S = 0.2
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 0.5


def tls_node(replica: Replica, peers: list[tuple[str, int]]) -> Node:
    """A node for an enrolled replica (see :mod:`.devices`) dialling
    ``peers``, on test timings: gossip every 0.2 s, backoff 0.05 s to 0.5 s."""
    cert, ca = load_device_certificate(replica.data_dir)
    own = verify_peer_certificate(cert, ca, int(time.time() * 1000))
    config = NodeConfig(
        peers=peers,
        gossip_interval=GOSSIP_S,
        backoff_base=BACKOFF_BASE_S,
        backoff_max=BACKOFF_MAX_S,
    )
    return Node(
        replica,
        config,
        ssl_context(replica.data_dir, server_side=True),
        ssl_context(replica.data_dir, server_side=False),
        ca,
        own_identity=own,
    )


def effect_pulse(*nodes: Node) -> Pulse:
    """A pulse that beats on every effect of every link of ``nodes``
    (entries applied, a peer identified, a session closed), after the node
    acted on it: a replica's state changes only with one of these."""
    pulse = Pulse()
    for node in nodes:
        node.effect_observers.append(pulse.beat)
    return pulse
