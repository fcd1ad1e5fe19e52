"""Load generator: many WebSocket clients that send one message each and consume the whole turn like a browser.

Runs as its own process (`python -m tests.bench.client < spec.json > result.json`) so its CPU is not the
server's. Times are `time.monotonic()`, which is system-wide on Linux, so they compare with the fake
vendor's send times directly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import sys
import time
from typing import Any

import aiohttp

_AUDIO_PREFIX = '{"type":"audio","audio_event":{"audio_base_64":"'


def _audio_bytes(frame: str) -> tuple[int, str]:
    """Byte count and base64 text of an audio frame, without parsing the JSON (the client must stay cheap)."""
    end = frame.index('"', len(_AUDIO_PREFIX))
    data = frame[len(_AUDIO_PREFIX) : end]
    return len(data) * 3 // 4 - data.count("=", len(data) - 2), data


async def one_turn(session: aiohttp.ClientSession, spec: dict[str, Any], cookie: str, index: int) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "audio": [], "errors": [], "status": None, "message_id": None}
    digest = hashlib.sha256()
    await asyncio.sleep(random.uniform(0, spec.get("stagger", 0.0)))
    headers = {"Cookie": cookie, "Origin": spec["url"]}
    url = spec["url"].replace("http", "ws", 1) + "/v1/convai/conversation"
    try:
        async with session.ws_connect(url, headers=headers, max_msg_size=0, heartbeat=None) as ws:
            meta = json.loads((await ws.receive(timeout=30)).data)
            result["format"] = meta["conversation_initiation_metadata_event"]["agent_output_audio_format"]
            result["sent_at"] = time.monotonic()
            await ws.send_str(json.dumps({"type": "user_message", "text": spec["message"]}))
            async for message in ws:
                now = time.monotonic()
                frame = message.data
                if frame.startswith(_AUDIO_PREFIX):
                    size, data = _audio_bytes(frame)
                    result["audio"].append((now, size))
                    if spec.get("verify"):
                        digest.update(base64.b64decode(data))
                    continue
                event = json.loads(frame)
                if event["type"] == "error":
                    result["errors"].append(event["error_event"]["code"])
                elif event["type"] == "agent_response_complete":
                    body = event["agent_response_complete_event"]
                    result["status"], result["message_id"] = body["status"], body["message_id"]
                    result["audio_status"] = body["audio_status"]
                    break
    except Exception as exc:
        result["errors"].append(f"client: {type(exc).__name__}: {exc}")
    result["sha256"] = digest.hexdigest() if spec.get("verify") else None
    return result


async def idle_connections(session: aiohttp.ClientSession, spec: dict[str, Any], cookies: list[str]) -> None:
    """Open one idle socket per cookie, report on stdout, and hold them until stdin closes."""
    url = spec["url"].replace("http", "ws", 1) + "/v1/convai/conversation"
    sockets = []
    for cookie in cookies:
        ws = await session.ws_connect(url, headers={"Cookie": cookie, "Origin": spec["url"]})
        await ws.receive(timeout=30)
        sockets.append(ws)
    print(json.dumps({"open": len(sockets)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in sockets:
        await ws.close()


async def main() -> None:
    spec = json.loads(sys.stdin.readline())
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if spec.get("idle"):
            await idle_connections(session, spec, spec["cookies"])
            return
        results = await asyncio.gather(*(one_turn(session, spec, c, i) for i, c in enumerate(spec["cookies"])))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
