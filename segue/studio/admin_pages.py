"""The admin's pages: sign-in, live statistics with quality control, invites and exports."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from segue.metrics import STUDIO_FLAGGED_ANNOTATORS
from segue.studio.access import FORM_COOKIE, LOGIN_COOKIE, digest, new_token
from segue.studio.exporting import MEDIA_TYPES, export_text
from segue.studio.http import Refusal
from segue.studio.quality import QualityRules, annotator_quality, model_agreement
from segue.studio.store import Login
from segue.studio.web_forms import (
    admin_or_sign_in,
    check_form_csrf,
    current_admin,
    form_token,
    int_field,
    now_utc,
    read_form,
    set_form_cookie,
    sign_in,
    text_field,
)

if TYPE_CHECKING:
    from segue.studio.app import Studio


class AdminPages:
    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.store = studio.store

    def _open(self) -> None:
        if not self.studio.password.enabled:
            raise Refusal(403, "admin", "admin pages are closed: the server has no "
                          "SEGUE_STUDIO_ADMIN_PASSWORD_FILE")

    def _login(self, request: Request) -> Login:
        return current_admin(request, self.store, self.studio.password.enabled)

    # ---- signing in and out ---------------------------------------------------------------
    async def login_page(self, request: Request, error: str = "", status: int = 200
                         ) -> Response:
        self._open()
        token = form_token(request)
        response = self.studio.templates.TemplateResponse(
            request, "admin_login.html", {"csrf": token, "error": error}, status_code=status)
        set_form_cookie(response, token)
        return response

    async def login(self, request: Request) -> Response:
        self._open()
        form = await read_form(request)
        check_form_csrf(request, form, request.cookies.get(FORM_COOKIE, ""))
        client = request.client.host if request.client else "unknown"
        if self.studio.limiter.blocked(client):
            return await self.login_page(request, "Too many failed attempts; wait a minute.",
                                         429)
        if not self.studio.password.check(form.get("password", "")):
            self.studio.limiter.fail(client)
            return await self.login_page(request, "Wrong password.", 401)
        response = RedirectResponse("/admin", status_code=303)
        await run_in_threadpool(sign_in, response, self.store, "admin", "admin",
                                self.studio.config.login_hours)
        return response

    async def logout(self, request: Request) -> Response:
        login = self._login(request)
        check_form_csrf(request, await read_form(request), login.csrf_token)
        await run_in_threadpool(self.store.delete_login,
                                digest(request.cookies.get(LOGIN_COOKIE, "")))
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True,
                               samesite="strict")
        return response

    # ---- statistics and invites -----------------------------------------------------------
    async def overview(self, request: Request, new_invite: str = "") -> Response:
        login = admin_or_sign_in(request, self.store, self.studio.password.enabled)
        if not isinstance(login, Login):
            return login
        context = await run_in_threadpool(self._stats)
        context.update(csrf=login.csrf_token, new_invite=new_invite)
        return self.studio.templates.TemplateResponse(request, "admin.html", context)

    def _stats(self) -> dict[str, Any]:
        answers = self.store.answered()
        quality = annotator_quality(answers, QualityRules())
        flagged = {q.annotator_id for q in quality if q.flagged}
        STUDIO_FLAGGED_ANNOTATORS.set(len(flagged))
        agree, total = model_agreement(answers, exclude=flagged)
        return {
            "totals": {"answers": len(answers), "annotators": len(quality),
                       "flagged": len(flagged)},
            "agreement": f"{agree / total:.0%}" if total else "–", "agreement_n": total,
            "quality": [quality_row(q) for q in quality],
            "invites": self.store.invites(),
        }

    async def create_invite(self, request: Request) -> Response:
        login = self._login(request)
        form = await read_form(request)
        check_form_csrf(request, form, login.csrf_token)
        label = text_field(form, "label", 100)
        uses, days = int_field(form, "max_uses", 1, 10_000), int_field(form, "days", 1, 365)
        token, now = new_token(), now_utc()
        await run_in_threadpool(self.store.create_invite, label, digest(token),
                                now + timedelta(days=days), uses, now)
        return await self.overview(request, new_invite=f"{request.base_url}join/{token}")

    async def export(self, request: Request) -> Response:
        self._login(request)
        fmt = request.path_params["name"]
        if fmt not in MEDIA_TYPES:
            raise Refusal(404, "name", "exports are mecomp.csv, bliss.csv and answers.json")
        include = request.query_params.get("include_flagged", "0") in ("1", "true")
        text = await run_in_threadpool(lambda: export_text(self.store, fmt,
                                                           include_flagged=include))
        media_type, filename = MEDIA_TYPES[fmt]
        return Response(text, media_type=media_type, headers={
            "content-disposition": f'attachment; filename="{filename}"'})


def quality_row(q: Any) -> dict[str, Any]:
    """One annotator's quality figures as the stats table shows them."""
    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"
    return {"annotator_id": q.annotator_id, "answers": q.answers, "gold": share(q.gold_accuracy),
            "consistency": share(q.consistency), "listening": share(q.listening_ratio),
            "flagged": q.flagged, "reasons": "; ".join(q.reasons)}


def routes(studio: Studio) -> list[Route]:
    pages = AdminPages(studio)
    return [
        Route("/admin/login", pages.login_page, methods=["GET"]),
        Route("/admin/login", pages.login, methods=["POST"]),
        Route("/admin/logout", pages.logout, methods=["POST"]),
        Route("/admin", pages.overview, methods=["GET"]),
        Route("/admin/invites", pages.create_invite, methods=["POST"]),
        Route("/admin/export/{name}", pages.export, methods=["GET"]),
    ]


__all__ = ["AdminPages", "routes"]
