"""``npc-forge chat NPC_ID``: talk to a library NPC on the terminal, replies streamed.

Lines starting with ``/`` are commands: ``/new`` starts a new conversation,
``/regen`` answers the last message again, ``/quit`` (or end of input) ends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from app.services.chat import ChatUpdate
from app.wiring import Services

HELP = "Type to talk. /new starts a new conversation, /regen answers again, /quit ends."


async def _stream(updates: AsyncIterator[ChatUpdate], name: str, out: TextIO) -> str | None:
    """Print a reply as it arrives; returns the conversation id."""
    printed, started = 0, False
    conversation = None
    async for update in updates:
        conversation = update.conversation.id
        if update.notice and not started:
            print(f"({update.notice})", file=sys.stderr)
        if not started and not update.done:
            out.write(f"{name}: ")  # once: the first update carries no text yet
            started = True
        if not update.done:
            out.write(update.reply[printed:])
            printed = len(update.reply)
            out.flush()
    out.write("\n")
    out.flush()
    return conversation


async def run_chat(args: argparse.Namespace, services: Services, out: TextIO | None = None) -> int:
    # sys.stdout now, not at import (a test or a caller may have replaced it since)
    out = out if out is not None else sys.stdout
    chat = services.chat
    npc = await services.library.get(args.npc_id)
    conversation: str | None = args.conversation
    if conversation:
        await chat.conversation(npc.id, conversation)  # a clear error for a wrong id
    print(f"Talking to {npc.name}, {npc.occupation} ({npc.world}). {HELP}", file=sys.stderr)
    try:
        while True:
            if sys.stdin.isatty():
                print("> ", end="", file=sys.stderr, flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text == "/quit":
                break
            if text == "/new":
                conversation = (await chat.new_conversation(npc.id, args.player)).id
                print("(a new conversation)", file=sys.stderr)
                continue
            if text == "/regen":
                if conversation is None:
                    print("(nothing to answer again yet)", file=sys.stderr)
                    continue
                updates = chat.regenerate(npc.id, conversation, backend=args.backend)
            else:
                updates = chat.send(
                    npc.id, conversation, text, player=args.player, backend=args.backend
                )
            conversation = await _stream(updates, npc.name, out) or conversation
    finally:
        if conversation is not None:
            await chat.end(npc.id, conversation)
            print(f"(conversation {conversation} saved)", file=sys.stderr)
    return 0
