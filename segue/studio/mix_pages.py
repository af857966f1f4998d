"""The admin's mix viewer: mixes made by `segue mix --playlist`, played with their waveform,
every song's gain curve (the mix mask), beat grid and sections, and a 1-5 rating per seam.

Routes (all need the admin sign-in):
    GET  /mixes                           the mixes in SEGUE_STUDIO_MIXES_DIR
    GET  /mixes/{mix_id}                  the viewer page (drawn by static/mixview.js)
    GET  /mixes/{mix_id}/data.json        the mix's view and waveform (see MixView.to_json)
    GET  /mixes/{mix_id}/audio            the mix's audio, with range requests
    POST /mixes/{mix_id}/seams/{n}/rating {"rating": 1-5} with the X-CSRF-Token header

Ratings go to the Studio's store (`listening.rate_seam`): one per rater and seam, a second
is a 409 naming "seam_index"; the listening test's results page summarises them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from segue.studio.http import Refusal, audio_response
from segue.studio.listening import rate_seam
from segue.studio.mixes import MixError, MixLibrary, MixView
from segue.studio.store import Login
from segue.studio.web_forms import (
    admin_or_sign_in,
    check_header_csrf,
    current_admin,
    int_field,
    read_json,
)

if TYPE_CHECKING:
    from segue.studio.app import Studio

class MixPages:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        config = studio.config
        self.library = MixLibrary(config.mixes_folder, config.data_dir / "mix-peaks")

    def _login(self, request: Request) -> Login:
        return current_admin(request, self.studio.store, self.studio.password.enabled)

    def _page_login(self, request: Request) -> Login | RedirectResponse:
        return admin_or_sign_in(request, self.studio.store, self.studio.password.enabled)

    async def _mix(self, request: Request) -> MixView:
        mix_id = request.path_params["mix_id"]
        try:
            view = await run_in_threadpool(self.library.open, mix_id)
        except MixError as e:
            raise Refusal(404, "mix_id", f"mix {mix_id!r} cannot be opened: {e}") from e
        if view is None:
            raise Refusal(404, "mix_id", f"no mix {mix_id!r} in the mixes folder")
        return view

    async def index(self, request: Request) -> Response:
        login = self._page_login(request)
        if not isinstance(login, Login):
            return login
        mixes = await run_in_threadpool(self.library.listing)
        return self.studio.templates.TemplateResponse(request, "mixes.html", {
            "mixes": mixes, "folder": str(self.library.folder), "csrf": login.csrf_token})

    async def page(self, request: Request) -> Response:
        login = self._page_login(request)
        if not isinstance(login, Login):
            return login
        view = await self._mix(request)
        return self.studio.templates.TemplateResponse(request, "mix.html", {
            "mix": view, "csrf": login.csrf_token,
            "rated": await run_in_threadpool(self._rated, view.mix_id, login.subject_id)})

    def _rated(self, mix_id: str, rater_id: str) -> dict[int, int]:
        """The ratings `rater_id` gave the seams of `mix_id`: seam number → 1-5."""
        return {r.seam_index: r.rating for r in self.studio.store.seam_ratings()
                if r.mix_id == mix_id and r.rater_id == rater_id}

    async def data(self, request: Request) -> Response:
        self._login(request)
        view = await self._mix(request)
        try:
            peaks = await run_in_threadpool(self.library.peaks, view)
        except MixError as e:
            raise Refusal(404, "mix_id", f"mix {view.mix_id!r}: {e}") from e
        return JSONResponse(view.to_json(peaks))

    async def audio(self, request: Request) -> Response:
        self._login(request)
        view = await self._mix(request)
        return audio_response(request, view.audio, view.media_type)

    async def rate(self, request: Request) -> Response:
        login = self._login(request)
        check_header_csrf(request, login)
        view = await self._mix(request)
        if not view.seams:
            raise Refusal(422, "seam", f"mix {view.mix_id!r} has one song and no seams")
        seam = int_field({"seam": request.path_params["n"]}, "seam", 1, len(view.seams))
        rating = int_field(await read_json(request), "rating", 1, 5)
        await run_in_threadpool(rate_seam, self.studio.store, view.mix_id, seam, rating,
                                login.subject_id, self.studio.flow.clock())
        return JSONResponse({"mix_id": view.mix_id, "seam": seam, "rating": rating})


def routes(studio: Studio) -> list[Route]:
    pages = MixPages(studio)
    return [
        Route("/mixes", pages.index, methods=["GET"]),
        Route("/mixes/{mix_id}", pages.page, methods=["GET"]),
        Route("/mixes/{mix_id}/data.json", pages.data, methods=["GET"]),
        Route("/mixes/{mix_id}/audio", pages.audio, methods=["GET"]),
        Route("/mixes/{mix_id}/seams/{n}/rating", pages.rate, methods=["POST"]),
    ]


__all__ = ["MixPages", "routes"]
