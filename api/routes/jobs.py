"""Write jobs: list, status (with progress and result), cancel."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PROTECTED, JobsDep, PrincipalDep
from api.jobs import Job
from rag.errors import NotFoundError
from rag.keys import Principal
from api.schemas import ERRORS, ErrorOut, JobList, JobOut

router = APIRouter(tags=["documents"], dependencies=PROTECTED)
_RESPONSES = {**ERRORS, 404: {"model": ErrorOut}}


@router.get("/jobs", response_model=JobList, responses=ERRORS)
def list_jobs(jobs: JobsDep, principal: PrincipalDep) -> JobList:
    """Queued, running and recently finished write jobs of the collections this key may read, newest first."""
    return JobList(jobs=[JobOut(**j.to_dict()) for j in jobs.list() if principal.can("read", j.collection)])


def _job(jobs, job_id: str, principal: Principal, level: str) -> Job:
    """The job, for a key that may ``level`` its collection; otherwise the same 404 as an unknown job."""
    job = jobs.get(job_id)
    if not principal.can(level, job.collection):
        raise NotFoundError(f"unknown job {job_id!r}")
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_RESPONSES)
def get_job(job_id: str, jobs: JobsDep, principal: PrincipalDep) -> JobOut:
    """A write job's status, progress, and its result or error once finished."""
    return JobOut(**_job(jobs, job_id, principal, "read").to_dict())


@router.delete("/jobs/{job_id}", response_model=JobOut, responses=_RESPONSES)
def cancel_job(job_id: str, jobs: JobsDep, principal: PrincipalDep) -> JobOut:
    """Cancel a write: a queued one at once; a running one stops before its commit (`cancel_requested`
    is set; poll until `status` is `cancelled`, or `succeeded` if it was already committing). A
    finished job is returned unchanged."""
    return JobOut(**jobs.cancel(_job(jobs, job_id, principal, "write").id).to_dict())
