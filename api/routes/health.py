"""Health of the API process: `/health` (as it always answered), `/health/live`, `/health/ready`.

Ready checks the database and the Temporal frontend (accounts/health.py) and answers `503` with
`Retry-After` and one Glue error per dependency down; live only says the process answers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from accounts.health import LIVE, database_check, readiness, temporal_check
from api.jsonapi import MEDIA_TYPE

router = APIRouter(include_in_schema=False)


@router.get("/health")
async def health() -> dict[str, str]:
    return LIVE


@router.get("/health/live")
async def live() -> dict[str, str]:
    return LIVE


@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    found = await readiness({"database": database_check(state.engine), "temporal": temporal_check(state.temporal)})
    return JSONResponse(
        found.body(),
        status_code=200 if found.ready else 503,
        headers=found.headers(),
        media_type="application/json" if found.ready else MEDIA_TYPE,
    )
