"""Write jobs: list, status (with progress and result), cancel."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PROTECTED, JobsDep
from api.schemas import ERRORS, ErrorOut, JobList, JobOut

router = APIRouter(tags=["documents"], dependencies=PROTECTED)
_RESPONSES = {**ERRORS, 404: {"model": ErrorOut}}


@router.get("/jobs", response_model=JobList, responses=ERRORS)
def list_jobs(jobs: JobsDep) -> JobList:
    """Queued, running and recently finished write jobs, newest first."""
    return JobList(jobs=[JobOut(**j.to_dict()) for j in jobs.list()])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_RESPONSES)
def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    """A write job's status, progress, and its result or error once finished."""
    return JobOut(**jobs.get(job_id).to_dict())


@router.delete("/jobs/{job_id}", response_model=JobOut, responses=_RESPONSES)
def cancel_job(job_id: str, jobs: JobsDep) -> JobOut:
    """Cancel a write: a queued one at once; a running one stops before its commit (`cancel_requested`
    is set; poll until `status` is `cancelled`, or `succeeded` if it was already committing). A
    finished job is returned unchanged."""
    return JobOut(**jobs.cancel(job_id).to_dict())
