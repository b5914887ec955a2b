"""Portraits and play buttons where the designer sees NPCs: cards, the voice route, Chat."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import soundfile
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.models import NPC
from app.services.accounts import Accounts, parse_account
from app.ui.media_panel import MediaHandlers
from app.ui.media_routes import CardMedia, build_media_routes
from app.ui.render import npc_card
from app.ui.sessions import signed_in
from app.wiring import Services
from tests.test_portraits import npc


def _media(services: Services) -> CardMedia:
    return CardMedia(services.portraits, services.voices)


def test_a_card_shows_the_portrait_and_a_player_per_line(services: Services) -> None:
    one = npc()
    html = npc_card(one, 1, _media(services))
    uri = html.split('class="npc-portrait" src="')[1].split('"')[0]
    svg = base64.b64decode(uri.removeprefix("data:image/svg+xml;base64,")).decode()
    assert svg == services.portraits.svg(one)
    assert html.count("<audio") == len(one.sample_lines)
    assert "<audio" not in npc_card(one, 1) and "npc-portrait" not in npc_card(one, 1)


def test_the_voice_route_speaks_what_the_card_links_to(services: Services) -> None:
    one = npc()
    media = _media(services)
    client = TestClient(Starlette(routes=build_media_routes(
        services.portraits, services.voices, services.library
    )))  # fmt: skip
    url = media.line_url(one, one.sample_lines[0]).replace("&amp;", "&")
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/ogg"
    assert soundfile.info(io.BytesIO(answer.content)).subtype == "OPUS"
    query = parse_qs(urlparse(url).query)
    assert query["voice"] == [services.voices.voice_for(one).key]
    bad = client.get("/media/voice.ogg?voice=nobody&text=hi")
    assert bad.status_code == 400 and "Unknown voice" in bad.text


def test_the_voice_route_answers_byte_ranges(services: Services) -> None:
    """A browser reads an Ogg file's last page for its length (else the player
    shows 0:00 / 0:00): the route answers byte ranges."""
    client = TestClient(Starlette(routes=build_media_routes(
        services.portraits, services.voices, services.library
    )))  # fmt: skip
    url = _media(services).line_url(npc(), "Hello there.").replace("&amp;", "&")
    whole = client.get(url)
    assert whole.headers["accept-ranges"] == "bytes"
    size = len(whole.content)
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole.content[-100:]
    assert tail.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
    middle = client.get(url, headers={"Range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == whole.content[10:20]
    assert client.get(url, headers={"Range": "bytes=10-"}).content == whole.content[10:]
    past = client.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"


def test_with_sign_in_on_the_routes_answer_only_a_session(services: Services) -> None:
    app = Starlette()
    app.auth = object()  # type: ignore[attr-defined]  # what Gradio's App has when auth is set
    app.cookie_id = "abc"  # type: ignore[attr-defined]
    app.tokens = {"token-1": "ada"}  # type: ignore[attr-defined]
    accounts = Accounts([parse_account("ada:pw-ada", "test")])
    routes = build_media_routes(
        services.portraits, services.voices, services.library, signed_in(app, accounts)
    )
    app.router.routes.extend(routes)
    url = _media(services).line_url(npc(), "Hello.")
    refused = TestClient(app).get(url)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    signed = TestClient(app, cookies={"access-token-abc": "token-1"})
    assert signed.get(url).status_code == 200
    assert TestClient(app, cookies={"access-token-abc": "forged"}).get(url).status_code == 401
    # A script sends the account's credentials instead of a cookie.
    assert TestClient(app).get(url, auth=("ada", "pw-ada")).status_code == 200
    assert TestClient(app).get(url, auth=("ada", "wrong")).status_code == 401


class RecordingMedia(CardMedia):
    def __init__(self, services: Services) -> None:
        super().__init__(services.portraits, services.voices)
        self.finished: list[list[NPC]] = []

    def cast_finished(self, npcs: list[NPC]) -> None:  # type: ignore[override]
        self.finished.append(list(npcs))


async def test_the_cast_view_warms_the_voices_once_the_cards_are_out(services: Services) -> None:
    from app.services.planning import CastRequest
    from app.ui.cast_view import CastView

    world = services.worlds.world_for("Saltmere")
    plan = await services.cast.plan(
        CastRequest(world=world, count=3, temperature=0.9, seed=4), save=False
    )
    media = RecordingMedia(services)
    view = CastView(plan, media=media)
    async with services.cast.run(plan) as run:
        view.start(run)
        async for outcome in run.outcomes():
            view.apply(outcome)
            assert media.finished == []  # never while cards are still coming
    view.finish(0.1, stopped=False, saving=False)
    assert [len(batch) for batch in media.finished] == [3]
    assert view.html().count("npc-portrait") == 3


async def test_chat_speaks_the_last_reply(services: Services, tmp_path: Path) -> None:
    handlers = MediaHandlers(_media(services), services.library, tmp_path)
    one = npc()

    async def get(npc_id: str) -> NPC:
        return one

    services.library.get = get  # type: ignore[method-assign]
    bubbles = [
        {"role": "user", "content": [{"type": "text", "text": "Who are you?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Bram, the smith."}]},
    ]
    path = await handlers.say(one.id, "", bubbles)
    assert Path(path).suffix == ".ogg" and soundfile.info(path).duration > 0.3
    assert isinstance(await handlers.speak_reply(one.id, False, bubbles), dict)  # gr.skip()
    spoken = await handlers.speak_reply(one.id, True, bubbles)
    assert soundfile.info(spoken).duration > 0.3
    shown = [update async for update in handlers.portrait(one.id)]
    assert len(shown) == 1  # no images model: the drawn portrait only
    face, lines = shown[0]
    assert face is not None and Path(face).read_bytes().startswith(b"\x89PNG")
    assert lines.count("<audio") == len(one.sample_lines)


async def test_the_library_card_has_the_portrait(services: Services, tmp_path: Path) -> None:
    from app.ui.library_tab import LibraryHandlers

    one = npc()

    async def get(npc_id: str) -> NPC:
        return one

    services.library.get = get  # type: ignore[method-assign]
    media = _media(services)
    handlers = LibraryHandlers(services.library, services.refine, services.removal, media=media)
    card, _ = await handlers.open(one.id, "backstory")
    assert 'class="npc-portrait"' in card and card.count("<audio") == len(one.sample_lines)


def test_a_portrait_is_served_only_to_who_may_see_the_npc(services: Services) -> None:
    from app.services.library import Viewer

    theirs = npc(owner="bea")

    class Store:
        def get(self, npc_id: str) -> NPC | None:
            return theirs if npc_id == theirs.id else None

    services.library._lazy._store = Store()  # type: ignore[assignment]

    def scope(library: Any, user: str, request: Any) -> Any:
        return library.as_seen_by(Viewer(user, sees_all=False))

    async def session(request: Any) -> str | None:
        return request.headers.get("x-user")

    app = Starlette(
        routes=build_media_routes(
            services.portraits, services.voices, services.library, session, scope
        )
    )
    client = TestClient(app)
    url = f"/media/portrait/{theirs.id}.png"
    assert client.get(url, headers={"x-user": "bea"}).content.startswith(b"\x89PNG")
    assert client.get(url, headers={"x-user": "ada"}).status_code == 404
    assert client.get(url).status_code == 401
