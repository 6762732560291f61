"""asyncio transports that drive the sans-IO session: TCP+TLS streams,
WebSocket, the node that keeps one link per peer, group commit, signature
pre-verification off the loop, and mDNS discovery.
"""
