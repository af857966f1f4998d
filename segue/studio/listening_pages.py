"""The listening test's pages: the blind A/B page with its audio, plays and answers for
annotators, and the results (HTML and JSON) for the admin.

Annotators reach /listen with the login their invite link gave them (the triplet session's
"Thank you" page links to it); the results are admin-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from segue.studio.http import Refusal, audio_response
from segue.studio.listening import ListeningFlow, listening_flow
from segue.studio.listening_model import MAX_RATING, MIN_RATING, SIDES
from segue.studio.listening_stats import CONFIDENCE, ResultRow, results
from segue.studio.store import Login
from segue.studio.web_forms import (
    admin_or_sign_in,
    check_header_csrf,
    current_admin,
    current_login,
    int_field,
    read_json,
    seconds_field,
    text_field,
)

if TYPE_CHECKING:
    from segue.studio.app import Studio

MAX_LISTENED_S = 3600.0


def side_field(data: dict[str, Any], name: str) -> int:
    """"A" (0) or "B" (1); 422 naming the field otherwise."""
    value = data.get(name)
    if not isinstance(value, str) or value not in SIDES:
        raise Refusal(422, name, f"{name} must be \"A\" or \"B\"")
    return SIDES.index(value)


class ListeningPages:
    def __init__(self, studio: Studio, flow: ListeningFlow) -> None:
        self.studio = studio
        self.store = studio.store
        self.flow = flow

    def page(self, request: Request, name: str, context: dict[str, object],
             status: int = 200) -> Response:
        return self.studio.templates.TemplateResponse(request, name, context, status_code=status)

    def message(self, request: Request, status: int, heading: str, text: str) -> Response:
        return self.page(request, "message.html", {"heading": heading, "text": text}, status)

    # ---- the annotator's page -------------------------------------------------------------
    async def listen(self, request: Request) -> Response:
        try:
            login = current_login(request, self.store, "annotator")
        except Refusal:
            return self.message(request, 401, "Your session has ended",
                                "Open your invite link again to continue.")
        try:
            page = await run_in_threadpool(self.flow.current, login.subject_id)
        except Refusal as refusal:
            return self.message(request, refusal.status, "The listening test is not available",
                                refusal.message)
        total = self.flow.settings.pages
        if page is None:
            return self.page(request, "listen_done.html", {"length": total})
        return self.page(request, "listen.html", {
            "page_id": page.id, "position": page.position, "length": total,
            "csrf": login.csrf_token, "sides": SIDES, "ratings": range(MIN_RATING,
                                                                        MAX_RATING + 1)})

    async def audio(self, request: Request) -> Response:
        login = current_login(request, self.store, "annotator")
        params = dict(request.path_params)
        page_id, side = text_field(params, "page_id"), side_field(params, "side")
        path = await run_in_threadpool(self.flow.audio_file, login.subject_id, page_id, side)
        return audio_response(request, path)

    async def played(self, request: Request) -> Response:
        login = current_login(request, self.store, "annotator")
        check_header_csrf(request, login)
        data = await read_json(request)
        page_id, side = text_field(data, "page_id"), side_field(data, "side")
        listened_s = seconds_field(data, "listened_s", MAX_LISTENED_S)
        await run_in_threadpool(self.flow.played, login.subject_id, page_id, side, listened_s)
        return JSONResponse({"played": SIDES[side]})

    async def answer(self, request: Request) -> Response:
        login = current_login(request, self.store, "annotator")
        check_header_csrf(request, login)
        data = await read_json(request)
        page_id, pick = text_field(data, "page_id"), side_field(data, "pick")
        ratings = (int_field(data, "rating_a", MIN_RATING, MAX_RATING),
                   int_field(data, "rating_b", MIN_RATING, MAX_RATING))
        await run_in_threadpool(self.flow.answer, login.subject_id, page_id, pick, ratings)
        return JSONResponse({"next": "/listen"})

    # ---- the admin's results --------------------------------------------------------------
    def _admin(self, request: Request) -> None:
        current_admin(request, self.store, self.studio.password.enabled)

    def _results(self) -> list[ResultRow]:
        return results(self.store.answered_comparisons(), self.store.seam_ratings())

    async def results_page(self, request: Request) -> Response:
        login = admin_or_sign_in(request, self.store, self.studio.password.enabled)
        if not isinstance(login, Login):
            return login
        rows = await run_in_threadpool(self._results)
        return self.page(request, "listen_results.html", {
            "rows": [display_row(r) for r in rows], "confidence": f"{CONFIDENCE:.0%}"})

    async def results_json(self, request: Request) -> Response:
        self._admin(request)
        rows = await run_in_threadpool(self._results)
        return JSONResponse({
            "confidence": CONFIDENCE,
            "preference_interval": "wilson",
            "rating_interval": "student-t, clipped to 1..5",
            "conditions": [r.to_json() for r in rows],
        }, headers={"content-disposition": 'attachment; filename="listening.json"'})


def display_row(row: ResultRow) -> dict[str, str | int]:
    """One result row as the results table shows it."""
    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    pi, ri = row.preference_interval, row.rating_interval
    return {"name": row.name, "label": row.label, "comparisons": row.comparisons,
            "wins": row.wins, "preference": share(row.preference),
            "preference_interval": "–" if pi is None else f"{share(pi[0])} – {share(pi[1])}",
            "ratings": row.ratings, "mean": number(row.mean_rating),
            "rating_interval": "–" if ri is None else f"{number(ri[0])} – {number(ri[1])}"}


def routes(studio: Studio) -> list[Route]:
    flow = listening_flow(studio.store, studio.flow.library, studio.config,
                          clock=studio.flow.clock)
    pages = ListeningPages(studio, flow)
    return [
        Route("/listen", pages.listen, methods=["GET"]),
        Route("/listen/audio/{page_id}/{side}", pages.audio, methods=["GET"]),
        Route("/listen/played", pages.played, methods=["POST"]),
        Route("/listen/answer", pages.answer, methods=["POST"]),
        Route("/admin/listening", pages.results_page, methods=["GET"]),
        Route("/admin/listening.json", pages.results_json, methods=["GET"]),
    ]


__all__ = ["ListeningPages", "display_row", "routes", "side_field"]
