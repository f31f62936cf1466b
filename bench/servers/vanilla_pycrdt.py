"""Vanilla pycrdt-websocket peer: its ASGIServer(WebsocketServer()) under uvicorn, as its docs show it.

No persistence, no auth, default settings. Usage: python servers/vanilla_pycrdt.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer


async def main(port: int) -> None:
    websocket_server = WebsocketServer()
    app = ASGIServer(websocket_server)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    async with websocket_server:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"READY {port}", flush=True)
        await task


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
