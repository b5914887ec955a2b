"""The Chat tab's portrait and voice panel: the NPC's face, its sample lines with
play buttons, and "Speak" for any text (the last reply when the box is empty).
API: ``portrait`` (NPC id -> PNG file) and ``say`` (NPC id, text -> Ogg Opus file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gradio as gr

from app.errors import InputError
from app.services.admission import Admission
from app.services.exports import safe_filename
from app.services.library import Library
from app.ui.downloads import offer
from app.ui.errors import required_npc_id, user_errors
from app.ui.identity import library_seen_by
from app.ui.media_routes import CardMedia
from app.ui.render import voice_lines


def _text(content: Any) -> str:
    """A Chatbot message's text: Gradio 6 sends a list of ``{"type": "text", ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, list):
        return " ".join(_text(part) for part in content).strip()
    return ""


def _last_reply(bubbles: Any) -> str | None:
    for message in reversed(bubbles or []):
        if isinstance(message, dict) and message.get("role") == "assistant":
            return _text(message.get("content")) or None
    return None


class MediaHandlers:
    def __init__(
        self,
        media: CardMedia,
        library: Library,
        export_dir: Path,
        admission: Admission | None = None,
    ) -> None:
        self.media = media
        self.library = library
        self.export_dir = export_dir
        self.admission = admission  # None: every caller sees every NPC (direct calls)

    def _library(self, request: gr.Request | None) -> Library:
        """The library as the caller sees it (their own NPCs and the team's)."""
        return library_seen_by(self.library, self.admission, request)

    async def portrait(
        self, npc_id: str | None, request: gr.Request | None = None
    ) -> AsyncIterator[tuple[str | None, str]]:
        """The NPC's portrait as a PNG file, and its sample lines with play buttons:
        the drawn portrait at once, then the painted one when an images model is set."""
        if not npc_id:
            yield None, ""
            return
        npc = await self._library(request).get(required_npc_id(npc_id, "pick an NPC first"))
        portraits, lines = self.media.portraits, voice_lines(npc, self.media)
        for kind in ("procedural", "auto") if portraits.painter else ("procedural",):
            image = await portraits.png(npc, kind=kind)
            if kind == "auto" and not image.painted:
                return  # the painting failed: the drawn portrait stays
            name = safe_filename(npc.name, ".png")
            yield await offer(self.export_dir, "portrait-", name, image.png), lines

    async def say(
        self,
        npc_id: str | None,
        text: str | None,
        bubbles: Any = None,
        request: gr.Request | None = None,
    ) -> str:
        """The NPC saying ``text`` (or its last reply), as an Ogg Opus file."""
        npc = await self._library(request).get(required_npc_id(npc_id, "pick an NPC first"))
        line = text if text and text.strip() else _last_reply(bubbles)
        if not line:
            raise InputError("Type what the NPC should say, or talk to it first.")
        speech = await self.media.voices.say(npc, line)
        name = safe_filename(f"{npc.name} line", speech.suffix)
        return await offer(self.export_dir, "voice-", name, speech.audio)

    async def speak_reply(
        self, npc_id: str | None, every: bool, bubbles: Any, request: gr.Request | None = None
    ) -> Any:
        """After a reply has streamed: speak it when "Speak every reply" is ticked."""
        if not every or not npc_id or not _last_reply(bubbles):
            return gr.skip()
        return await self.say(npc_id, None, bubbles, request)


class MediaPanel:
    """What the chat wires after its own events: speak each finished reply when asked."""

    def __init__(
        self, handlers: MediaHandlers, npc: gr.Dropdown, bubbles: gr.Chatbot, every: gr.Checkbox,
        audio: gr.Audio,
    ) -> None:  # fmt: skip
        self.handlers, self.npc, self.bubbles, self.every, self.audio = (
            handlers, npc, bubbles, every, audio,
        )  # fmt: skip

    def speak_replies_after(self, *events: Any) -> None:
        for event in events:
            event.then(
                user_errors(self.handlers.speak_reply),
                [self.npc, self.every, self.bubbles],
                [self.audio],
                api_visibility="private",
            )


def build_media_panel(
    npc: gr.Dropdown,
    bubbles: gr.Chatbot,
    media: CardMedia,
    library: Library,
    export_dir: Path,
    admission: Admission | None = None,
) -> MediaPanel:
    """Inside the current column: the portrait, the lines and the Speak button."""
    handlers = MediaHandlers(media, library, export_dir, admission)
    with gr.Row():
        face = gr.Image(label="Portrait", type="filepath", interactive=False, height=220, scale=1)
        lines = gr.HTML(scale=2)
    with gr.Row():
        text = gr.Textbox(label="Text to speak (empty = the last reply)", scale=3)
        speak = gr.Button("Speak", scale=0)
    every = gr.Checkbox(label="Speak every reply", value=False)
    audio = gr.Audio(label="Voice", type="filepath", interactive=False, autoplay=True)
    npc.change(user_errors(handlers.portrait), [npc], [face, lines], api_name="portrait")
    speak.click(user_errors(handlers.say), [npc, text, bubbles], [audio], api_name="say")
    return MediaPanel(handlers, npc, bubbles, every, audio)
