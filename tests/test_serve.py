"""``ferbatch serve``: a real uvicorn on 127.0.0.1 in a child process, called with httpx."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
from conftest import INTEL_2FACE, MULTI_FACE, read_frames
from servers import free_port, spawn, stop, wait_until

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOKEN = "test-token-4f1b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, _cache):
    root = tmp_path_factory.mktemp("data_root")
    (root / "clips").mkdir()
    shutil.copy(INTEL_2FACE, root / "clips" / INTEL_2FACE.name)
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    tok = tmp_path_factory.mktemp("tok") / "token"
    tok.write_text(TOKEN + "\n")
    args = ["-m", "ferbatch", "serve", "--port", str(port), "--token-file", str(tok), "--data-root", str(root)]
    args += ["--jobs-dir", str(tmp_path_factory.mktemp("jobs")), "--max-upload-mb", "1", "--backend", "onnxruntime"]
    proc = spawn(args, log=log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).json()["status"] == "ok"
        except httpx.HTTPError:
            return False

    wait_until(up, 60, "ferbatch serve start-up", proc, log)
    yield url
    assert stop(proc) in (0, -15), log.read_text()[-3000:]  # uvicorn re-raises SIGTERM after a clean shutdown


def test_auth_is_required(server):
    img = {"file": ("f.jpg", MULTI_FACE.read_bytes(), "image/jpeg")}
    r = httpx.post(f"{server}/v1/analyze", files=img)
    assert r.status_code == 401 and "bearer" in r.json()["detail"]
    r = httpx.post(f"{server}/v1/analyze", files=img, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = httpx.get(f"{server}/v1/jobs/abc", headers={"Authorization": "Basic " + TOKEN})
    assert r.status_code == 401
    assert httpx.get(f"{server}/openapi.json").json()["paths"].keys() >= {"/v1/analyze", "/v1/jobs", "/v1/jobs/{job_id}"}


def test_analyze_image_matches_the_library(server, models):
    import cv2

    r = httpx.post(f"{server}/v1/analyze", files={"file": ("m.jpg", MULTI_FACE.read_bytes(), "image/jpeg")}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "image" and len(body["frames"]) == 1
    assert body["emotions"] == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    faces = body["frames"][0]["faces"]
    img = cv2.imread(str(MULTI_FACE))[:, :, ::-1].copy()
    from ferbatch.live.infer import infer_images

    dets, probs = infer_images(models, [img])
    assert len(faces) == len(dets) >= 2
    np.testing.assert_allclose([f["box"] for f in faces], dets.boxes, atol=0.01)
    np.testing.assert_allclose([f["probs"] for f in faces], probs, atol=1e-5)
    for f in faces:
        assert abs(sum(f["probs"]) - 1) < 1e-3 and f["emotion"] == body["emotions"][int(np.argmax(f["probs"]))]


def test_analyze_clip(server):
    r = httpx.post(
        f"{server}/v1/analyze?every=5", files={"file": ("c.mp4", INTEL_2FACE.read_bytes(), "video/mp4")}, headers=AUTH, timeout=60
    )
    assert r.status_code == 200, r.text
    body = r.json()
    n = len(read_frames(INTEL_2FACE))
    assert body["kind"] == "video" and body["frames_decoded"] == n
    assert [f["frame_idx"] for f in body["frames"]] == list(range(0, n, 5))
    assert sum(len(f["faces"]) for f in body["frames"]) >= len(body["frames"])


@pytest.mark.parametrize(
    "payload, status, words",
    [
        (b"", 400, "empty"),
        (b"just some text, not a picture\n" * 10, 415, "not an image or a video"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 415, "not an image or a video"),
        (b"x" * (1024 * 1024 + 10), 413, "over the limit"),
    ],
    ids=["empty", "text", "broken-png", "too-large"],
)
def test_bad_input_is_a_clear_4xx(server, payload, status, words):
    r = httpx.post(f"{server}/v1/analyze", files={"file": ("bad.bin", payload, "application/octet-stream")}, headers=AUTH, timeout=30)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_chunked_body_over_the_limit_is_refused(server):
    """A chunked form body (no Content-Length) is counted as it arrives (never buffered whole) and
    refused with 413 past the limit; a body that is not a form is answered without being read."""

    def chunks(form: bool):
        if form:
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="y.bin"\r\n\r\n'
        for _ in range(40):
            yield b"y" * 65536

    h = AUTH | {"Content-Type": "multipart/form-data; boundary=xyz"}
    r = httpx.post(f"{server}/v1/analyze", content=chunks(True), headers=h, timeout=30)
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    r = httpx.post(f"{server}/v1/analyze", content=chunks(False), headers=AUTH | {"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 422


def test_missing_file_field_is_422(server):
    r = httpx.post(f"{server}/v1/analyze", data={"other": "x"}, headers=AUTH)
    assert r.status_code == 422


def test_concurrent_requests_are_batched_and_consistent(server):
    """A bounded load (200 requests, 16 at a time): every answer is 200 and the same, and the
    batcher served them in fewer model calls than requests."""
    data = MULTI_FACE.read_bytes()
    before = httpx.get(f"{server}/healthz").json()["batcher"]

    async def go():
        sem = asyncio.Semaphore(16)
        async with httpx.AsyncClient(timeout=120) as c:

            async def one():
                async with sem:
                    return await c.post(f"{server}/v1/analyze", files={"file": ("m.jpg", data, "image/jpeg")}, headers=AUTH)

            return await asyncio.gather(*[one() for _ in range(200)])

    rs = asyncio.run(go())
    assert [r.status_code for r in rs] == [200] * 200
    first = rs[0].json()["frames"]
    assert all(r.json()["frames"] == first for r in rs)
    after = httpx.get(f"{server}/healthz").json()["batcher"]
    assert after["requests"] - before["requests"] == 200
    assert after["calls"] - before["calls"] < 200


def test_jobs(server):
    r = httpx.post(f"{server}/v1/jobs", json={"input": "../"}, headers=AUTH)
    assert r.status_code == 400 and "outside the data root" in r.json()["detail"]
    r = httpx.post(f"{server}/v1/jobs", json={"input": "nope"}, headers=AUTH)
    assert r.status_code == 400 and "no such file" in r.json()["detail"]
    assert httpx.get(f"{server}/v1/jobs/0123", headers=AUTH).status_code == 404
    r = httpx.post(f"{server}/v1/jobs", json={"input": "clips"}, headers=AUTH)
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    seen = []

    def finished() -> bool:
        st = httpx.get(f"{server}/v1/jobs/{jid}", headers=AUTH).json()
        seen.append(st["status"])
        return st["status"] not in ("queued", "running")

    wait_until(finished, 120, "the job to finish")
    st = httpx.get(f"{server}/v1/jobs/{jid}", headers=AUTH).json()
    assert st["status"] == "done", st
    n = len(read_frames(INTEL_2FACE))
    assert st["progress"]["frames"] == {"done": n, "total": n} and st["fraction"] == 1.0
    s = httpx.get(f"{server}/v1/jobs/{jid}/summary", headers=AUTH).json()
    assert s["job"]["ok"] == 1 and s["job"]["frames"] == n
    (v,) = s["videos"]
    assert v["path"] == INTEL_2FACE.name and v["frames"] == n and v["faces"] > 0


def test_batcher_refuses_work_beyond_its_queue(models):
    """The bounded queue: beyond max_pending waiting requests, submit raises Busy (HTTP 503)."""
    import cv2

    from ferbatch.service.batcher import Batcher, Busy

    img = cv2.imread(str(MULTI_FACE))[:, :, ::-1].copy()
    b = Batcher(models, max_frames=8, max_wait_ms=0, max_pending=1)
    futs = []
    try:
        with pytest.raises(Busy, match="retry later"):
            for _ in range(20):
                futs.append(b.submit([img] * 8))
        assert b.stats.refused == 1
        assert all(len(f.result(timeout=120)) == 8 for f in futs)
    finally:
        b.close()
