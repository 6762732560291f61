"""The asyncio stream driver: two replicas sync over real loopback TCP."""

from __future__ import annotations

import asyncio

from headcount import Role
from headcount.net.stream import StreamPeer
from headcount.protocol.session import Applied, Session, SessionConfig, SyncStatus
from headcount.replica.log import ReplicaLog

from .support.replicas import EV, introduce, view


def test_two_replicas_sync_over_loopback_tcp(make_replica):
    admin, gate = make_replica("admin", Role.ADMIN), make_replica("gate")
    introduce(admin, gate)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(50)])

    async def main():
        applied = {"admin": asyncio.Event(), "gate": asyncio.Event()}

        def on_effect(name):
            def handler(peer, effect):
                if isinstance(effect, Applied):
                    applied[name].set()

            return handler

        async def serve(reader, writer):
            peer = StreamPeer(Session(ReplicaLog(admin), 0.0), reader, writer, on_effect("admin"))
            await peer.run()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = StreamPeer(
            Session(ReplicaLog(gate), 0.0, SessionConfig()), reader, writer, on_effect("gate")
        )
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(applied["gate"].wait(), 10)  # the event reached the gate
        gate.check_in(EV, "p7")
        await client.notify(EV)
        await asyncio.wait_for(applied["admin"].wait(), 10)  # the scan reached the admin
        assert client.session.status.status in (SyncStatus.SYNCED, SyncStatus.SENDING)
        await client.close()
        await asyncio.wait_for(task, 5)
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert view(admin) == view(gate)
