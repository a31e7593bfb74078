"""The explorer's web app: one self-contained page (``page.html``: no CDN, nothing fetched from the
internet) and a small JSON API over :class:`~facegen.explore.engine.Explorer`. Images travel as PNG
data URLs. Endpoints are plain (synchronous) functions, so FastAPI runs each request in its thread
pool: a slow request (an upload being detected) never holds up another tab's slider moves. User
mistakes answer 400 with the command's one-line ``error: ...`` text, which the page shows.

    GET  /                         the page
    GET  /api/state                columns (families, metrics, traversal dims), attributes, faces
    GET  /api/faces/{id}.png       a face as the models see it (aligned crop)
    POST /api/faces/{id}/encode    start encoding it in every family -> a job (or its result at once)
    GET  /api/jobs/{id}            a job's progress; its result when done
    POST /api/upload?name=&aligned=  the photo as the raw request body -> the face and its encoding job
    POST /api/render               {face, edits: {attr: alpha}, traverse: {family: {dim: offset}}}
    POST /api/interpolate          {a, b, steps, spherical}
    POST /api/sample               {family, n, seed, conditions: {attr: 0|1}}
"""
from __future__ import annotations

import base64
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from facegen.errors import FacegenError
from facegen.explore.engine import Explorer, UploadTooLarge, check_upload_size
from facegen.explore.jobs import Job, Jobs


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _summary_json(summary: dict[str, Any]) -> dict[str, Any]:
    return {family: {**entry, "reconstruction": data_url(entry["reconstruction"])} for family, entry in summary.items()}


def _job_json(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {"job": job.id, "state": job.state, "fraction": round(job.fraction, 3),
                           "message": job.message}
    if job.state == "done":
        out["result"] = _summary_json(job.result)
    elif job.state == "error":
        out["error"] = job.error
    return out


def refusal(err: FacegenError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": f"error: {err}"}, status_code=status)


class RenderRequest(BaseModel):
    face: str
    edits: dict[str, float] = Field(default_factory=dict)
    traverse: dict[str, dict[int, float]] = Field(default_factory=dict)


class InterpolateRequest(BaseModel):
    a: str
    b: str
    steps: int = Field(default=8, ge=2, le=16)
    spherical: bool = False


class SampleRequest(BaseModel):
    family: str
    n: int = 8
    seed: int = 0
    conditions: dict[str, float] = Field(default_factory=dict)


def create_app(explorer: Explorer) -> FastAPI:
    """The FastAPI app serving ``explorer`` (no docs pages: they would fetch Swagger UI from a CDN)."""
    app = FastAPI(title="facegen explore", docs_url=None, redoc_url=None, openapi_url=None)
    jobs = Jobs()
    page = resources.files("facegen.explore").joinpath("page.html").read_text(encoding="utf-8")

    def encode_job(face_id: str) -> Job:
        return jobs.start(f"encode:{face_id}", lambda report: explorer.encode(face_id, report))

    @app.exception_handler(FacegenError)
    def _facegen_error(request: Request, err: FacegenError) -> JSONResponse:
        return refusal(err)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return {**explorer.describe(), "faces": explorer.faces()}

    @app.get("/api/faces/{face_id}.png")
    def face_png(face_id: str) -> Response:
        return Response(explorer.face_png(face_id), media_type="image/png")

    @app.post("/api/faces/{face_id}/encode")
    def encode(face_id: str) -> dict[str, Any]:
        explorer.face(face_id)  # an unknown face is refused here, not in the job
        if explorer.encoded(face_id):
            return {"job": None, "state": "done", "fraction": 1.0, "message": "done",
                    "result": _summary_json(explorer.summary(face_id))}
        return _job_json(encode_job(face_id))

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        found = jobs.get(job_id)
        if found is None:
            raise FacegenError(f"no job {job_id} (the server was restarted?): pick the face again")
        return _job_json(found)

    @app.post("/api/upload")
    async def upload(request: Request, name: str = "upload", aligned: bool = False) -> JSONResponse:
        try:
            size = int(request.headers.get("content-length") or 0)
            check_upload_size(size, name)  # refused before reading a byte when the size is declared
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                check_upload_size(len(body), name)
            face = await run_in_threadpool(explorer.add_upload, bytes(body), name, aligned)
        except UploadTooLarge as err:
            return refusal(err, 413)
        except FacegenError as err:
            return refusal(err)
        return JSONResponse({"face": {"id": face.id, "label": face.label, "attributes": face.attributes,
                                      "note": face.note}, **_job_json(encode_job(face.id))})

    @app.post("/api/render")
    def render(req: RenderRequest) -> dict[str, Any]:
        t0 = time.perf_counter()
        images = explorer.render(req.face, req.edits, req.traverse)
        return {"images": {f: data_url(b) for f, b in images.items()}, "ms": round(1000 * (time.perf_counter() - t0), 1)}

    @app.post("/api/interpolate")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        images = explorer.interpolate(req.a, req.b, req.steps, req.spherical)
        return {"images": {f: data_url(b) for f, b in images.items()}}

    @app.post("/api/sample")
    def sample(req: SampleRequest) -> dict[str, Any]:
        return {"image": data_url(explorer.sample(req.family, req.n, req.seed, req.conditions))}

    return app
