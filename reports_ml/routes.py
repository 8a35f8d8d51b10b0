"""HTTP routes of the review service and its web console (ARCHITECTURE.md §6).

The console page ``GET /review`` and its script and style sheet are served without a key: they
hold no data. Every piece of data the console shows comes from the JSON routes below, each of
which admits only its role (P11); the contributor pastes a contributor key once and the page
sends it as ``X-API-Key``. Reporter ids never appear in a contributor's response.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from core.auth import Role, require_roles
from core.deps import AdminRole, AppRole, ContributorRole, DatabaseDep
from core.errors import NotFound
from core.text import StorableText
from reports_ml import review
from reports_ml.registry import ModelRegistry, ServingModel
from reports_ml.review_models import (
    CoursePromptsRead,
    CourseRead,
    DecisionCreate,
    DecisionRead,
    OutboxRead,
    PromptCreate,
    QueueRead,
    ReportCreate,
    ReportIntakeRead,
    ScorerRead,
)
from reports_ml.scoring import HEURISTIC_NOTE, Scorer

router = APIRouter()

_PACKAGE = Path(__file__).resolve().parent
_templates = Jinja2Templates(directory=_PACKAGE / "templates")
_STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}

# The page runs only its own script and talks only to this origin; nothing may frame it.
_CONSOLE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

CourseParam = Annotated[StorableText, PathParam(min_length=1, max_length=100, pattern=r"^[\w.-]+$")]
ReviewerRole = Annotated[Role, Depends(require_roles(Role.CONTRIBUTOR, Role.ADMIN))]


def get_serving_model(request: Request) -> ServingModel:
    serving: ServingModel | None = getattr(request.app.state, "serving_model", None)
    if serving is None:
        registry = ModelRegistry(request.app.state.database, request.app.state.store)
        serving = ServingModel(registry, poll_s=request.app.state.settings.model_poll_s)
        request.app.state.serving_model = serving
    return serving


ServingDep = Annotated[ServingModel, Depends(get_serving_model)]


def _scorer_read(scorer: Scorer) -> ScorerRead:
    if scorer.kind == "heuristic":
        return ScorerRead(kind="heuristic", version=scorer.version, note=HEURISTIC_NOTE)
    return ScorerRead(
        kind="model", version=scorer.version, note=f"ranked by model version {scorer.version}"
    )


@router.put("/v1/courses/{course}/prompts", tags=["reports"])
def put_course_prompts(
    course: CourseParam,
    prompts: list[PromptCreate],
    _role: AdminRole,
    database: DatabaseDep,
    serving: ServingDep,
) -> CoursePromptsRead:
    """Add or update a course's prompts with their accepted translations."""
    with database.session(write=True) as session:
        return review.put_prompts(session, course=course, prompts=prompts, scorer=serving.current())


@router.get("/v1/courses", tags=["reports"])
def get_courses(_role: ReviewerRole, database: DatabaseDep) -> list[CourseRead]:
    """Courses with prompts, and how many reports wait for review in each."""
    with database.session() as session:
        return review.list_courses(session)


@router.post(
    "/v1/reports",
    tags=["reports"],
    responses={201: {"model": ReportIntakeRead, "description": "a new report was opened"}},
)
def post_report(
    body: ReportCreate,
    response: Response,
    _role: AppRole,
    database: DatabaseDep,
    serving: ServingDep,
) -> ReportIntakeRead:
    """A learner's report: 201 when it opens a report, 200 when it joins one or was decided."""
    with database.session(write=True) as session:
        answer, created = review.submit_report(session, report=body, scorer=serving.current())
    response.status_code = 201 if created else 200
    return answer


@router.get("/v1/reports/queue", tags=["reports"])
def get_queue(
    _role: ContributorRole,
    database: DatabaseDep,
    serving: ServingDep,
    course: Annotated[StorableText, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[StorableText | None, Query(max_length=500)] = None,
) -> QueueRead:
    """Open reports of a course, most likely correct first, with a diff to the nearest
    accepted translation."""
    scorer = serving.current()
    with database.session() as session:
        items, next_cursor, total = review.queue(session, course=course, limit=limit, cursor=cursor)
    return QueueRead(
        course=course,
        items=items,
        open_reports=total,
        next_cursor=next_cursor,
        scorer=_scorer_read(scorer),
    )


@router.post("/v1/reports/{report_id}/decision", tags=["reports"])
def post_decision(
    report_id: Annotated[StorableText, PathParam(max_length=64)],
    body: DecisionCreate,
    _role: ContributorRole,
    database: DatabaseDep,
    serving: ServingDep,
) -> DecisionRead:
    """Accept or reject a report, once; a second decision is 409 ``already_decided``."""
    with database.session(write=True) as session:
        return review.decide(
            session, report_id=report_id, accept=body.accept, scorer=serving.current()
        )


@router.get("/v1/reports/outbox", tags=["reports"])
def get_outbox(
    _role: AdminRole,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OutboxRead:
    """Thank-you notices for learners whose reports were accepted, for the e-mail service."""
    with database.session() as session:
        return OutboxRead(items=review.list_outbox(session, limit=limit))


@router.post("/v1/reports/outbox/{notice_id}/ack", status_code=204, tags=["reports"])
def post_outbox_ack(
    notice_id: Annotated[StorableText, PathParam(max_length=64)],
    _role: AdminRole,
    database: DatabaseDep,
) -> Response:
    """The notice was sent: it is deleted, and the reporter id with it."""
    with database.session(write=True) as session:
        review.acknowledge(session, notice_id=notice_id)
    return Response(status_code=204)


@router.get("/review", response_class=HTMLResponse, tags=["console"])
def review_console(request: Request) -> HTMLResponse:
    """The review console shell (no data; the page calls the API with the contributor's key)."""
    return _templates.TemplateResponse(
        request, "review.html", {"title": "Chorus review"}, headers=_CONSOLE_HEADERS
    )


@router.get("/review/static/{name}", include_in_schema=False)
def review_static(name: str) -> FileResponse:
    media_type = _STATIC.get(name)
    if media_type is None:
        raise NotFound("no such file")
    return FileResponse(
        _PACKAGE / "static" / name,
        media_type=media_type,
        headers={"Cache-Control": "no-cache"},
    )
