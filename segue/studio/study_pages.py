"""The annotator's pages: invite and consent, the triplet page, clip audio, plays, answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from segue.studio.access import FORM_COOKIE, digest
from segue.studio.http import Refusal, audio_response
from segue.studio.model import Item, StudySession
from segue.studio.store import InviteRefusedError, Login
from segue.studio.web_forms import (
    check_form_csrf,
    check_header_csrf,
    current_login,
    form_token,
    int_field,
    now_utc,
    read_form,
    read_json,
    seconds_field,
    set_form_cookie,
    sign_in,
    text_field,
)

if TYPE_CHECKING:
    from segue.studio.app import Studio

INVITE_REFUSALS = {"unknown": 404, "expired": 410, "used up": 410}
MAX_LISTENED_S = 3600.0


class StudyPages:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.store = studio.store
        self.flow = studio.flow

    def page(self, request: Request, name: str, context: dict[str, object],
             status: int = 200) -> Response:
        return self.studio.templates.TemplateResponse(request, name, context, status_code=status)

    def message(self, request: Request, status: int, heading: str, text: str) -> Response:
        return self.page(request, "message.html", {"heading": heading, "text": text}, status)

    # ---- joining --------------------------------------------------------------------------
    async def consent(self, request: Request) -> Response:
        invite = request.path_params["invite"]
        reason = await run_in_threadpool(self._invite_problem, invite)
        if reason is not None:
            return self._invite_refused(request, reason)
        config = self.studio.config
        token = form_token(request)
        response = self.page(request, "consent.html", {
            "invite": invite, "length": config.session_length, "clip_s": config.clip_s,
            "minutes": max(1, round(config.session_length * (3 * config.clip_s + 10) / 60)),
            "csrf": token})
        set_form_cookie(response, token)
        return response

    def _invite_problem(self, invite: str) -> str | None:
        """Why the invite cannot be used now, or None."""
        found = self.store.invite(digest(invite)) if len(invite) <= 128 else None
        if found is None:
            return "unknown"
        if found.expires_at <= now_utc():
            return "expired"
        return "used up" if found.uses >= found.max_uses else None

    def _invite_refused(self, request: Request, reason: str) -> Response:
        return self.message(request, INVITE_REFUSALS[reason], "This invite link does not work",
                            f"The invite is {reason}. Ask whoever sent it for a new link.")

    async def join(self, request: Request) -> Response:
        form = await read_form(request)
        check_form_csrf(request, form, request.cookies.get(FORM_COOKIE, ""))
        if form.get("agree") != "yes":
            raise Refusal(422, "agree", "consent is needed to take part")
        invite = request.path_params["invite"]
        try:
            _, session = await run_in_threadpool(
                self.store.join, digest(invite), self.studio.config.session_length, now_utc())
        except InviteRefusedError as e:
            return self._invite_refused(request, e.reason)
        await run_in_threadpool(self.flow.prefetch, session, 0)  # cut while the page loads
        response = RedirectResponse("/study", status_code=303)
        sign_in(response, self.store, "annotator", session.annotator_id,
                self.studio.config.login_hours)
        return response

    # ---- the triplet page -----------------------------------------------------------------
    def session_of(self, login: Login) -> StudySession:
        sessions = self.store.sessions_of(login.subject_id)
        if not sessions:
            raise Refusal(401, "login", "no session: open your invite link again")
        return sessions[-1]

    async def study(self, request: Request) -> Response:
        try:
            login = current_login(request, self.store, "annotator")
        except Refusal:
            return self.message(request, 401, "Your session has ended",
                                "Open your invite link again to continue.")
        session, item = await run_in_threadpool(self._current, login)
        if item is None:
            return self.page(request, "done.html", {"length": session.length})
        return self.page(request, "study.html", {
            "item_id": item.id, "position": item.position, "length": session.length,
            "csrf": login.csrf_token})

    def _current(self, login: Login) -> tuple[StudySession, Item | None]:
        session = self.session_of(login)
        return session, self.flow.current(session)

    async def audio(self, request: Request) -> Response:
        login = current_login(request, self.store, "annotator")
        slot = int_field(dict(request.path_params), "slot", 0, 2)
        item_id = text_field(dict(request.path_params), "item_id")
        path = await run_in_threadpool(
            lambda: self.flow.clip_file(self.session_of(login), item_id, slot))
        return audio_response(request, path)

    async def played(self, request: Request) -> Response:
        login = current_login(request, self.store, "annotator")
        check_header_csrf(request, login)
        data = await read_json(request)
        item_id, slot = text_field(data, "item_id"), int_field(data, "slot", 0, 2)
        listened_s = seconds_field(data, "listened_s", MAX_LISTENED_S)
        await run_in_threadpool(
            lambda: self.flow.played(self.session_of(login), item_id, slot, listened_s))
        return JSONResponse({"played": slot})

    async def answer(self, request: Request) -> Response:
        login = current_login(request, self.store, "annotator")
        check_header_csrf(request, login)
        data = await read_json(request)
        item_id, pick = text_field(data, "item_id"), int_field(data, "pick", 0, 2)
        await run_in_threadpool(
            lambda: self.flow.answer(self.session_of(login), item_id, pick))
        return JSONResponse({"next": "/study"})


def routes(studio: Studio) -> list[Route]:
    pages = StudyPages(studio)
    return [
        Route("/join/{invite}", pages.consent, methods=["GET"]),
        Route("/join/{invite}", pages.join, methods=["POST"]),
        Route("/study", pages.study, methods=["GET"]),
        Route("/study/audio/{item_id}/{slot}", pages.audio, methods=["GET"]),
        Route("/study/played", pages.played, methods=["POST"]),
        Route("/study/answer", pages.answer, methods=["POST"]),
    ]


__all__ = ["StudyPages", "routes"]
