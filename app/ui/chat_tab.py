"""The Chat tab: pick an NPC, talk to it, watch the reply stream, see what it remembered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import orjson

from app.errors import InputError
from app.services.admission import Admission
from app.services.chat import ANYONE, ChatService, Chatter, ChatUpdate, memory_text
from app.services.chat_exports import (
    as_memory_lines,
    conversation_markdown,
    conversation_sillytavern,
    read_sillytavern,
)
from app.services.conversations import Conversation
from app.services.exports import safe_filename
from app.services.library import Library
from app.services.memory import MemoryService
from app.ui.downloads import offer
from app.ui.errors import required_npc_id, user_errors, warn
from app.ui.identity import caller_of, library_seen_by
from app.ui.media_routes import CardMedia

MEMORY_COLUMNS = ["memory", "recency", "importance", "relevance", "gate", "score", "owner"]
SCORES = MEMORY_COLUMNS[1:-1]
TEAM = "team"  # how the memory panel shows a memory that is nobody's in particular
NEW = "(new conversation)"
ChatOutputs = tuple[list[dict[str, str]], dict[str, Any], list[list[Any]], str, str]


def _bubbles(conversation: Conversation, streaming: str | None = None) -> list[dict[str, str]]:
    shown = [{"role": m.role, "content": m.content} for m in conversation.messages]
    if streaming is not None:
        shown.append({"role": "assistant", "content": streaming or "…"})
    return shown


def _memory_rows(memories: Sequence[Any]) -> list[list[Any]]:
    rows = []
    for memory in memories:
        scores = [round(float(getattr(memory, name, 0.0)), 3) for name in SCORES]
        owner = getattr(getattr(memory, "memory", memory), "owner", None)
        rows.append([memory_text(memory), *scores, owner or TEAM])
    return rows


def _choice(conversation: Conversation, chatter: Chatter = ANYONE) -> tuple[str, str]:
    """A conversation in the list; whose it is when it is not the caller's own."""
    label = f"{conversation.title} · {len(conversation.messages)} messages"
    if chatter.owner and conversation.owner != chatter.owner:
        label += f" · {conversation.owner or TEAM}'s"
    return (label, conversation.id)


def _npc_id(npc_id: str | None) -> str:
    return required_npc_id(npc_id, "search the library above, then pick one")


class ChatHandlers:
    """Plain methods, tested directly; the tab wires them to components."""

    def __init__(
        self,
        chat: ChatService,
        library: Library,
        memory: MemoryService,
        export_dir: Path,
        admission: Admission | None = None,
    ) -> None:
        self.chat = chat
        self.library = library
        self.memory = memory
        self.export_dir = export_dir
        self.admission = admission  # None: every caller is trusted (direct calls)

    def _admit(self, request: gr.Request | None, backend: str | None) -> str | None:
        """Count the message against the caller's quota; the backend they may use."""
        if self.admission is None:
            return backend
        caller = caller_of(self.admission, request)
        chosen = self.admission.backend_for(caller, backend)
        self.admission.chat_message(caller)
        return chosen

    def _chatter(self, request: gr.Request | None) -> Chatter:
        """Whose the caller's conversations and memories are, and whose they see:
        a designer their own and the team's, an admin everyone's."""
        if self.admission is None:
            return ANYONE
        caller = caller_of(self.admission, request)
        return Chatter(self.admission.owner(caller), self.admission.viewer(caller).owners)

    def _library(self, request: gr.Request | None) -> Library:
        """The library as the caller sees it (their own NPCs and the team's)."""
        return library_seen_by(self.library, self.admission, request)

    async def _npc(self, npc_id: str | None, request: gr.Request | None) -> str:
        """The picked NPC's id, once the caller may see it ("not found" otherwise)."""
        return (await self._library(request).get(_npc_id(npc_id))).id

    async def find(
        self, query: str | None, request: gr.Request | None = None
    ) -> tuple[dict[str, Any], str]:
        """NPCs for the picker: closest in meaning to the query, or the first ones."""
        library = self._library(request)
        if query and query.strip():
            npcs = [hit.npc for hit in await library.search(query, k=20)]
        else:
            npcs = await library.list_npcs(limit=50)
        choices = [(f"{npc.name} · {npc.occupation} ({npc.world})", npc.id) for npc in npcs]
        status = f"{len(npcs)} NPCs found." if npcs else "No NPC in the library yet."
        return gr.update(choices=choices, value=choices[0][1] if choices else None), status

    async def open_npc(self, npc_id: str | None, request: gr.Request | None = None) -> ChatOutputs:
        """The NPC's latest conversation (or none yet), and its list."""
        if not npc_id:
            return [], gr.update(choices=[NEW], value=NEW), [], "", ""
        npc = await self._library(request).get(_npc_id(npc_id))
        chatter = self._chatter(request)
        conversations = await self.chat.conversations(npc.id, chatter)
        choices = [(NEW, NEW), *(_choice(c, chatter) for c in conversations)]
        # The latest one the caller may talk in (the team's older ones are listed to read).
        latest = next((c for c in conversations if chatter.may_write(c)), None)
        value = latest.id if latest else NEW
        shown = _bubbles(latest) if latest else []
        status = f"Talking to **{npc.name}**, {npc.occupation}."
        return shown, gr.update(choices=choices, value=value), [], status, ""

    async def open_conversation(
        self, npc_id: str | None, conversation_id: str | None, request: gr.Request | None = None
    ) -> Any:
        if not npc_id or not conversation_id or conversation_id == NEW:
            return []
        npc = await self._npc(npc_id, request)
        return _bubbles(await self.chat.conversation(npc, conversation_id, self._chatter(request)))

    async def _outputs(self, update: ChatUpdate, chatter: Chatter) -> ChatOutputs:
        conversation = update.conversation
        shown = _bubbles(conversation, None if update.done else update.reply)
        status = update.notice or ""
        if update.done:  # the list gains a new conversation or a new message count
            listed = await self.chat.conversations(conversation.npc_id, chatter)
            choice = gr.update(
                choices=[(NEW, NEW), *(_choice(c, chatter) for c in listed)],
                value=conversation.id,
            )
        else:
            choice = gr.skip()
        return shown, choice, _memory_rows(update.memories), status, ""

    async def send(
        self,
        npc_id: str | None,
        conversation_id: str | None,
        player: str | None,
        message: str | None,
        backend: str | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[ChatOutputs]:
        """Say something; the reply streams into the chat."""
        conversation = None if conversation_id in (None, "", NEW) else conversation_id
        npc = await self._npc(npc_id, request)
        backend = self._admit(request, backend)
        chatter = self._chatter(request)
        async for update in self.chat.send(
            npc, conversation, message or "", player=player, backend=backend, chatter=chatter
        ):
            yield await self._outputs(update, chatter)

    async def regenerate(
        self,
        npc_id: str | None,
        conversation_id: str | None,
        backend: str | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[ChatOutputs]:
        """Answer the last message again."""
        if conversation_id in (None, "", NEW):
            raise InputError("Start a conversation first: say something.")
        npc = await self._npc(npc_id, request)
        backend = self._admit(request, backend)
        chatter = self._chatter(request)
        async for update in self.chat.regenerate(
            npc, str(conversation_id), backend=backend, chatter=chatter
        ):
            yield await self._outputs(update, chatter)

    async def new_conversation(
        self, npc_id: str | None, player: str | None, request: gr.Request | None = None
    ) -> ChatOutputs:
        conversation = await self.chat.new_conversation(
            await self._npc(npc_id, request), player, self._chatter(request)
        )
        choice = gr.update(choices=[(NEW, NEW), _choice(conversation)], value=conversation.id)
        return [], choice, [], "A new conversation: the NPC still remembers the old ones.", ""

    async def export(
        self,
        npc_id: str | None,
        conversation_id: str | None,
        fmt: str,
        request: gr.Request | None = None,
    ) -> str:
        """The conversation as Markdown or as a SillyTavern chat (.jsonl)."""
        if conversation_id in (None, "", NEW):
            raise InputError("Pick a conversation to export first.")
        npc = await self._library(request).get(_npc_id(npc_id))
        conversation = await self.chat.conversation(
            npc.id, str(conversation_id), self._chatter(request)
        )
        if fmt == "SillyTavern chat (JSONL)":
            data, suffix = conversation_sillytavern(conversation, npc.name), ".jsonl"
        else:
            data, suffix = conversation_markdown(conversation, npc.name).encode(), ".md"
        return await offer(
            self.export_dir, "chat-", safe_filename(f"{npc.name} chat", suffix), data
        )

    # -- memory ------------------------------------------------------------------------
    async def memory_search(
        self,
        npc_id: str | None,
        query: str | None,
        player: str | None,
        request: gr.Request | None = None,
    ) -> tuple[list[list[Any]], str]:
        """What the NPC remembers that fits a query, ranked as a reply would use it
        (of the memories the caller may see: a designer's own and the team's)."""
        npc = await self._npc(npc_id, request)
        if not query or not query.strip():
            raise InputError("Type what to look for in the NPC's memory.")
        owners = self._chatter(request).owners
        found = await self.memory.retrieve(
            npc, query, player=player or None, owners=owners, touch=False
        )
        count = await self.memory.count(npc, owners)
        return _memory_rows(found), f"{len(found)} of {count:,} memories shown."

    async def memory_import(
        self, npc_id: str | None, file: str | None, request: gr.Request | None = None
    ) -> str:
        """A SillyTavern chat (.jsonl) into the NPC's memory, one memory per message."""
        npc = await self._npc(npc_id, request)
        if not file:
            raise InputError("Choose a SillyTavern chat file (.jsonl) to import.")
        path = Path(file)
        data = await asyncio.to_thread(path.read_bytes)
        messages, problems = read_sillytavern(data, path.name)
        lines = [
            orjson.dumps(line).decode() for line in as_memory_lines(messages, self.memory.now())
        ]
        report = await self.memory.import_jsonl(npc, lines, owner=self._chatter(request).owner)
        for problem in [*problems, *map(str, report.problems)][:5]:
            warn(problem)
        return report.summary()

    async def memory_clear(
        self, npc_id: str | None, sure: bool, request: gr.Request | None = None
    ) -> tuple[str, bool]:
        """Forget what the NPC remembers (conversations stay): everything for an
        admin; for a designer, their own memories of it (the team's and others' stay)."""
        npc = await self._npc(npc_id, request)
        if not sure:
            raise InputError("Tick 'Yes, forget everything' first: this cannot be undone.")
        chatter = self._chatter(request)
        if chatter.owners is None:  # an admin, or nobody signs in
            return f"Forgot {await self.memory.clear(npc):,} memories.", False
        removed = await self.memory.clear_owned(npc, chatter.owner or "")
        return f"Forgot {removed:,} of your memories (the team's stay).", False


def build_chat(
    chat: ChatService,
    library: Library,
    memory: MemoryService,
    export_dir: Path,
    admission: Admission | None = None,
    *,
    media: CardMedia | None = None,
) -> None:
    handlers = ChatHandlers(chat, library, memory, export_dir, admission)
    backend_choices = ["auto", *chat.backends.names()]
    with gr.Row():
        query = gr.Textbox(label="Find an NPC", placeholder="grumpy baker, or a name", scale=3)
        find = gr.Button("Find", scale=0)
        # Custom values: the API may name any NPC id.
        npc = gr.Dropdown([], label="NPC", allow_custom_value=True, scale=3)
        player = gr.Textbox(label="Your name (optional)", placeholder="the player", scale=2)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            conversation = gr.Dropdown(
                [NEW], value=NEW, label="Conversation", allow_custom_value=True
            )
            bubbles = gr.Chatbot(label="Chat", height=460)
            message = gr.Textbox(label="Say", placeholder="Ask who they are, what they want…")
            with gr.Row():
                send = gr.Button("Send", variant="primary")
                again = gr.Button("Regenerate reply")
                fresh = gr.Button("New conversation")
            status = gr.Markdown()
        with gr.Column(scale=2):
            panel = None
            if media is not None:  # the NPC's portrait, its lines to play, Speak
                from app.ui.media_panel import build_media_panel

                panel = build_media_panel(npc, bubbles, media, library, export_dir, admission)
            memories = gr.Dataframe(
                headers=MEMORY_COLUMNS,
                label="Memories used for the last reply (scores 0-1)",
                interactive=False,
                wrap=True,
            )
            with gr.Accordion("Export this conversation", open=False):
                fmt = gr.Radio(
                    ["Markdown", "SillyTavern chat (JSONL)"], value="Markdown", label="Format"
                )
                export = gr.Button("Export")
                exported = gr.File(label="Download", interactive=False)
            with gr.Accordion("This NPC's memory", open=False):
                recall_query = gr.Textbox(label="What does it remember about…")
                recall = gr.Button("Search memory")
                found = gr.Dataframe(headers=MEMORY_COLUMNS, interactive=False, wrap=True)
                memory_status = gr.Markdown()
                upload = gr.File(
                    label="Import a SillyTavern chat (.jsonl) as memories",
                    file_types=[".jsonl"],
                    type="filepath",
                )
                do_import = gr.Button("Import into memory")
                sure = gr.Checkbox(label="Yes, forget everything this NPC remembers")
                forget = gr.Button("Clear this NPC's memory", variant="stop")
            backend = gr.Dropdown(backend_choices, value="auto", label="Backend")

    h = user_errors
    outputs = [bubbles, conversation, memories, status, message]
    find.click(h(handlers.find), [query], [npc, status], api_name="chat_find")
    query.submit(h(handlers.find), [query], [npc, status], api_visibility="private")
    npc.change(h(handlers.open_npc), [npc], outputs, api_name="chat_open")
    conversation.change(
        h(handlers.open_conversation), [npc, conversation], [bubbles], api_visibility="private"
    )
    chat_inputs = [npc, conversation, player, message, backend]
    sent = send.click(h(handlers.send), chat_inputs, outputs, api_name="chat")
    said = message.submit(h(handlers.send), chat_inputs, outputs, api_visibility="private")
    redone = again.click(
        h(handlers.regenerate), [npc, conversation, backend], outputs, api_name="chat_regenerate"
    )
    if panel is not None:
        panel.speak_replies_after(sent, said, redone)
    fresh.click(h(handlers.new_conversation), [npc, player], outputs, api_name="chat_new")
    export.click(h(handlers.export), [npc, conversation, fmt], [exported], api_name="chat_export")
    recall.click(
        h(handlers.memory_search), [npc, recall_query, player], [found, memory_status],
        api_name="memory_search",
    )  # fmt: skip
    do_import.click(
        h(handlers.memory_import), [npc, upload], [memory_status], api_name="memory_import_chat"
    )
    forget.click(
        h(handlers.memory_clear), [npc, sure], [memory_status, sure], api_name="memory_clear"
    )
