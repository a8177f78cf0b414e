"""``ferbatch serve``: a real uvicorn on 127.0.0.1 in a child process, called with httpx.

The JSON forms of ``/v1/analyze`` and the console lines were each checked by breaking their guard,
watching the test fail, and restoring it (mutations):

- base64 decoded without the data: URI prefix stripped -> ``test_base64_and_data_uri_match_the_upload``
  fails (400 not valid base64).
- ``resolve_under`` skipping its inside-the-root check -> ``../``, the absolute path outside and the
  escaping symlink answer 200 -> ``test_path_outside_the_data_root_is_refused`` fails.
- ``read_path`` opening without ``O_NONBLOCK`` -> the FIFO under the data root blocks the request
  (httpx ReadTimeout) -> ``test_path_outside_the_data_root_is_refused`` fails.
- ``resolve_under`` refusing absolute paths again (``absolute`` ignored) ->
  ``test_path_under_the_data_root`` fails (400 for the absolute path under the root).
- ``read_path`` without its "no --data-root" check -> 500 instead of the 400 ->
  ``test_without_data_root_paths_are_refused_and_ctrl_c_says_so`` fails.
- ``decode_base64``'s length check before decoding removed -> ``test_decode_base64_checks_the_size_first``
  fails (the 413 becomes a decoded body).
- ``decode_base64`` with ``validate=False`` -> garbage decodes to bytes (415, not 400) ->
  ``test_bad_json_bodies_are_a_clear_4xx`` fails; the URL check removed -> the URL is taken for
  base64 (400 not valid base64, no "fetches nothing") -> the same test fails.
- ``serve`` with ``log_level="warning"`` as before -> no address line, no request log ->
  ``test_serve_prints_its_address_and_requests`` fails; ``StopLine.handle_exit`` not printing ->
  the Ctrl-C test fails; ``-q`` ignored -> ``test_quiet_serve_prints_no_request_log`` fails.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal

import numpy as np
import pytest
from conftest import INTEL_2FACE, MULTI_FACE, read_frames
from servers import free_port, spawn, stop, wait_serving, wait_until

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOKEN = "test-token-4f1b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _start(tmp_path_factory, extra: list[str]):
    """A ``ferbatch serve`` child on a free port with ``extra`` arguments, up: (url, proc, log)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    tok = tmp_path_factory.mktemp("tok") / "token"
    tok.write_text(TOKEN + "\n")
    args = ["-m", "ferbatch", "serve", "--port", str(port), "--token-file", str(tok), "--backend", "onnxruntime", *extra]
    proc = spawn(args, log=log)
    url = f"http://127.0.0.1:{port}"

    wait_serving(url, 60, proc, log)
    return url, proc, log


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """clips/<the Intel clip>, faces/m.jpg, faces/escape.jpg (a symlink to a photo outside) and
    faces/pipe (a FIFO nobody writes to)."""
    root = tmp_path_factory.mktemp("data_root")
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(MULTI_FACE, outside / "secret.jpg")
    (root / "clips").mkdir()
    shutil.copy(INTEL_2FACE, root / "clips" / INTEL_2FACE.name)
    (root / "faces").mkdir()
    shutil.copy(MULTI_FACE, root / "faces" / "m.jpg")
    (root / "faces" / "escape.jpg").symlink_to(outside / "secret.jpg")
    os.mkfifo(root / "faces" / "pipe")
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory, _cache, data_root):
    args = ["--data-root", str(data_root), "--jobs-dir", str(tmp_path_factory.mktemp("jobs")), "--max-upload-mb", "1"]
    url, proc, log = _start(tmp_path_factory, args)
    yield url, proc, log
    assert stop(proc) in (0, -15), log.read_text()[-3000:]  # uvicorn re-raises SIGTERM after a clean shutdown


@pytest.fixture(scope="module")
def server(served):
    return served[0]


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

    dets = infer_images(models, [img])
    assert len(faces) == len(dets) >= 2
    np.testing.assert_allclose([f["box"] for f in faces], dets.boxes, atol=0.01)
    np.testing.assert_allclose([f["probs"] for f in faces], dets.probs, atol=1e-5)
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


def _analyze_json(url: str, body: object, **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/analyze", json=body, headers=AUTH, timeout=60, **kw)


def _upload_frames(url: str) -> list:
    r = httpx.post(f"{url}/v1/analyze", files={"file": ("m.jpg", MULTI_FACE.read_bytes(), "image/jpeg")}, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["frames"]


def test_base64_and_data_uri_match_the_upload(server):
    """The same photo as a multipart file, as base64 (also wrapped at 76 characters, as ``base64``
    prints it) and as a data: URI gives the same answer."""
    ref = _upload_frames(server)
    assert len(ref[0]["faces"]) >= 2
    b64 = base64.b64encode(MULTI_FACE.read_bytes()).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    for text in (b64, wrapped, "data:image/jpeg;base64," + b64):
        r = _analyze_json(server, {"image": text})
        assert r.status_code == 200, r.text[:300]
        body = r.json()
        assert body["kind"] == "image" and body["frames"] == ref


def test_path_under_the_data_root(server, data_root):
    """A relative and an absolute path under the data root read the photo; a clip path goes through
    the clip decoder (every N-th frame) like an uploaded clip."""
    ref = _upload_frames(server)
    for p in ("faces/m.jpg", "./faces/../faces/m.jpg", str(data_root / "faces" / "m.jpg")):
        r = _analyze_json(server, {"path": p})
        assert r.status_code == 200, (p, r.text[:300])
        assert r.json()["frames"] == ref
    r = _analyze_json(server, {"path": f"clips/{INTEL_2FACE.name}"}, params={"every": 5})
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    n = len(read_frames(INTEL_2FACE))
    assert body["kind"] == "video" and body["frames_decoded"] == n
    assert [f["frame_idx"] for f in body["frames"]] == list(range(0, n, 5))


def test_path_outside_the_data_root_is_refused(server, data_root):
    outside = data_root.parent / "elsewhere.jpg"
    shutil.copy(MULTI_FACE, outside)
    cases = [
        ("../elsewhere.jpg", "points outside the data root"),
        (str(outside), "points outside the data root"),
        ("faces/escape.jpg", "points outside the data root"),
        ("faces", "not a regular file"),
        ("faces/pipe", "not a regular file"),
        ("faces/none.jpg", "no such file"),
        ("http://example.com/a.jpg", "fetches nothing"),
    ]
    for p, words in cases:
        r = _analyze_json(server, {"path": p})
        assert r.status_code == 400, (p, r.text[:300])
        detail = r.json()["detail"]
        assert words in detail, (p, detail)
        assert str(data_root) not in detail and "\n" not in detail


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"image": "this is not base64!"}, 400, "not valid base64"),
        ({"image": "QUJD" * 10 + "@"}, 400, "not valid base64"),
        ({"image": "héllo"}, 400, "not valid base64"),
        ({"image": ""}, 400, "empty"),
        ({"image": "data:text/plain,hello"}, 400, "not base64"),
        ({"image": "https://example.com/face.jpg"}, 400, "fetches nothing"),
        ({"image": base64.b64encode(b"plain text, not a picture\n" * 8).decode()}, 415, "not an image or a video"),
        ({}, 422, "exactly one of"),
        ({"image": "QUJD", "path": "faces/m.jpg"}, 422, "exactly one of"),
        ({"url": "https://example.com/face.jpg"}, 422, "exactly one of"),
        ({"image": 5}, 422, "body.image | Input should be a valid string"),
        ({"path": "a\x00b"}, 422, "null byte"),
        ({"image": "", "path": None}, 400, "empty"),
        ({"path": "a" * 5000}, 422, "body.path | String should have at most 4096 characters"),
        ("not json{", 422, "Invalid JSON"),
    ],
    ids=[
        "garbage",
        "bad-char",
        "non-ascii",
        "empty",
        "data-not-base64",
        "url",
        "not-an-image",
        "none",
        "both",
        "url-field",
        "not-a-string",
        "nul",
        "null-path",
        "path-5000",
        "not-json",
    ],
)
def test_bad_json_bodies_are_a_clear_4xx(server, body, status, words):
    if isinstance(body, str):
        r = httpx.post(f"{server}/v1/analyze", content=body, headers=AUTH | {"Content-Type": "application/json"}, timeout=30)
    else:
        r = _analyze_json(server, body)
    assert r.status_code == status, r.text[:300]
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail and len(detail) < 1000


def test_oversized_base64_is_413(server):
    """Base64 of 1.5 MB under a 1 MiB limit: refused by its size (Content-Length), not decoded."""
    text = base64.b64encode(b"\xff" * 1_500_000).decode()
    r = _analyze_json(server, {"image": text})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]


def test_decode_base64_checks_the_size_first():
    """The length of the text is checked against the limit before anything is decoded."""
    from ferbatch.service.media import BadUpload, decode_base64

    assert decode_base64(base64.b64encode(b"x" * 99).decode(), 99) == b"x" * 99
    assert decode_base64("data:image/png;base64," + base64.b64encode(b"x" * 10).decode().rstrip("="), 99) == b"x" * 10
    with pytest.raises(BadUpload, match="decode to more than the limit of 99 bytes") as e:
        decode_base64(base64.b64encode(b"x" * 100).decode(), 99)
    assert e.value.status == 413
    with pytest.raises(BadUpload, match="decode to more than the limit") as e:
        decode_base64("!" * 400, 99)  # refused by its length, before its characters are looked at
    assert e.value.status == 413


def test_openapi_documents_both_bodies(server):
    op = httpx.get(f"{server}/openapi.json").json()["paths"]["/v1/analyze"]["post"]
    content = op["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert set(content["application/json"]["schema"]["properties"]) == {"image", "path"}
    assert "URLs are refused" in op["description"]


def test_serve_prints_its_address_and_requests(served):
    url, _, log = served
    assert httpx.get(f"{url}/healthz").status_code == 200
    _upload_frames(url)
    text = log.read_text()
    assert f"Uvicorn running on {url}" in text, text[-2000:]
    assert '"POST /v1/analyze HTTP/1.1" 200' in text and "Application startup complete" in text


def test_without_data_root_paths_are_refused_and_ctrl_c_says_so(tmp_path_factory, _cache, data_root):
    """No --data-root: a path (even one that exists) is refused with 400; base64 still works; Ctrl-C
    (SIGINT) prints the stop line and ends the process."""
    url, proc, log = _start(tmp_path_factory, [])
    try:
        for p in ("faces/m.jpg", str(data_root / "faces" / "m.jpg")):
            r = _analyze_json(url, {"path": p})
            assert r.status_code == 400, r.text[:300]
            assert "paths are off: start the service with --data-root" in r.json()["detail"]
        r = _analyze_json(url, {"image": base64.b64encode(MULTI_FACE.read_bytes()).decode()})
        assert r.status_code == 200 and len(r.json()["frames"][0]["faces"]) >= 2
    finally:
        rc = stop(proc, signal.SIGINT)
    text = log.read_text()
    assert "ferbatch serve | SIGINT: stopping" in text, text[-2000:]
    assert rc is not None


def test_quiet_serve_prints_no_request_log(tmp_path_factory, _cache):
    url, proc, log = _start(tmp_path_factory, ["-q"])
    try:
        _upload_frames(url)
    finally:
        stop(proc, signal.SIGINT)
    text = log.read_text()
    assert "Uvicorn running" not in text and "POST /v1/analyze" not in text and "stopping" not in text, text[-2000:]
