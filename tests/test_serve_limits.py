"""``ferbatch serve`` under hostile input: a real uvicorn on 127.0.0.1 in a child process (stopped by
pid), its memory measured with psutil while requests are served.

Each guard was checked by removing it, watching its test fail, and restoring it (mutations; the
RSS figures are the server's peak growth measured by the test):

- image header check (``_decode_image`` decodes first, checks after, as before): the 10000x10000
  PNG (308 KB) costs +596 MB before its 413 (0 MB with the check) ->
  ``test_huge_png_is_refused_from_its_header`` fails.
- clip frames downscaled at decode (``_fit`` skipped: full 4K RGB frames, a chunk at a time):
  +506 MB (about 45 MB with it) -> ``test_4k_clip_is_cut_and_stays_small`` fails.
- boxes scaled back to the clip's pixels (``_frames_json`` skips the scale) -> the boxes are half
  size -> ``test_downscaled_clip_boxes_are_in_the_clip_pixels`` fails.
- clip pixel check (``Clip._check`` returns at once) -> the 8K clip is decoded and answers 200 ->
  ``test_8k_clip_is_refused_from_its_header`` fails.
- auth middleware (``BearerAuth`` not added; the route dependency still answers 401, but only
  once the body is in) -> no answer while the client still sends the 50 MB body ->
  ``test_unauthenticated_body_is_not_read`` fails.
- ``token_matches`` comparing the first 4 characters only -> a token differing after them is
  accepted (200) -> ``test_token_differing_after_4_characters`` fails.
- the body limit buffering the body (the old ``BodyLimit``) -> +177 MB for a 45 MB upload (45 MB
  with the streaming one) -> ``test_authenticated_large_body_is_not_copied`` fails.
- admission counting chunks (``submit(..., admitted=True)`` counted again) -> Busy ->
  ``test_pending_counts_requests_not_chunks`` fails, and ``test_48_concurrent_clips_are_all_served``
  gets 503s.
- ``JobRequest``'s null-byte validator or ``max_length`` removed -> 400 from the second layer
  instead of 422; the 422 handler removed -> FastAPI's answer echoes the 100k field ->
  ``test_null_bytes_and_huge_fields_are_4xx`` fails; the job id not shortened in the 404 -> 10 KB
  answer -> the same test fails.
- ``resolve_input``'s null-byte check or its OSError catch removed -> ValueError / OSError (a 500)
  -> ``test_resolve_input_rejects_bad_paths`` fails.
- upload names not shortened in messages -> ``test_upload_names_with_null_bytes_or_100k_characters``
  fails.
- the JSON forms of ``/v1/analyze`` go through the same header check (``_decode_image`` decoding
  first, as above): the base64 of the 10000x10000 PNG and the path to it under the data root cost
  hundreds of MB before their 413 -> ``test_base64_and_path_of_a_huge_png_are_refused_from_its_header``
  fails.
- the JSON body read whole before the size check (``BodyLimit`` not added): the 60 MB chunked JSON
  body is read and parsed -> ``test_chunked_json_over_the_limit_is_refused_unread`` fails (it grows
  by > 100 MB and answers 415, not 413).
- symlink check (``jobs._check_links`` returns at once) -> 202 for a directory holding a
  link out of the data root -> ``test_symlink_out_of_the_data_root_is_refused`` fails.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from conftest import INTEL_2FACE, MULTI_FACE
from servers import free_port, spawn, stop, wait_serving

httpx = pytest.importorskip("httpx")
psutil = pytest.importorskip("psutil")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
av = pytest.importorskip("av")

TOKEN = "tok-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_FRAMES = 20
GROWTH_MB = 100


def _clip(w: int, h: int, n: int) -> bytes:
    """An H.264 MP4 of ``n`` single-colour frames of w x h (tiny on disk, large decoded)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.full((h, w, 3), (i * 9) % 256, np.uint8), format="rgb24")
            for pk in s.encode(fr):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return buf.getvalue()


def _clip_of(img: np.ndarray, n: int) -> bytes:
    """An H.264 MP4 of ``n`` copies of ``img`` (H, W, 3) uint8 RGB."""
    buf = io.BytesIO()
    h, w = img.shape[:2]
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "12"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(n):
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return buf.getvalue()


class _Peak:
    """Peak RSS growth of process ``pid`` while the ``with`` block runs (sampled every 5 ms), MB."""

    def __init__(self, pid: int):
        self.p = psutil.Process(pid)

    def __enter__(self) -> _Peak:
        self.base = self.peak = self.p.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.p.memory_info().rss)
                time.sleep(0.005)

        self._t = threading.Thread(target=sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.p.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1e6


DATA_ROOT: list = []  # the server's data root, for tests that put files under it


@pytest.fixture(scope="module")
def server(tmp_path_factory, _cache):
    root = tmp_path_factory.mktemp("data_root")
    DATA_ROOT[:] = [root]
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(INTEL_2FACE, outside / "secret.mp4")
    (root / "clips").mkdir()
    shutil.copy(INTEL_2FACE, root / "clips" / "ok.mp4")
    (root / "linked").mkdir()
    (root / "linked" / "evil.mp4").symlink_to(outside / "secret.mp4")
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    tok = tmp_path_factory.mktemp("tok") / "token"
    tok.write_text(TOKEN + "\n")
    args = ["-m", "ferbatch", "serve", "--port", str(port), "--token-file", str(tok), "--data-root", str(root)]
    args += ["--jobs-dir", str(tmp_path_factory.mktemp("jobs")), "--backend", "onnxruntime", "--threads", "2"]
    args += ["--max-frames", str(MAX_FRAMES)]
    proc = spawn(args, log=log)
    url = f"http://127.0.0.1:{port}"

    wait_serving(url, 90, proc, log)
    # warm-up: the model arenas grow to a chunk of 16 frames at 1024 x 576 once, before anything is measured
    r = httpx.post(f"{url}/v1/analyze", files={"file": ("w.mp4", _clip(1024, 576, 16), "video/mp4")}, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{url}/v1/analyze", files={"file": ("m.jpg", MULTI_FACE.read_bytes(), "image/jpeg")}, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    yield url, proc, port
    assert stop(proc) in (0, -15), log.read_text()[-3000:]


def test_huge_png_is_refused_from_its_header(server):
    from PIL import Image

    url, proc, _ = server
    buf = io.BytesIO()
    Image.new("RGB", (10000, 10000), (40, 90, 160)).save(buf, "PNG")
    png = buf.getvalue()
    assert len(png) < 1_000_000  # a few hundred KB on the wire, 300 MB decoded
    with _Peak(proc.pid) as peak:
        r = httpx.post(f"{url}/v1/analyze", files={"file": ("big.png", png, "image/png")}, headers=AUTH, timeout=60)
    assert r.status_code == 413, r.text
    assert "10000x10000 pixels is more than the limit" in r.json()["detail"]
    print(f"server RSS growth: {peak.growth_mb:.1f} MB")
    assert peak.growth_mb < GROWTH_MB, f"the server grew by {peak.growth_mb:.0f} MB"


def test_4k_clip_is_cut_and_stays_small(server):
    url, proc, _ = server
    data = _clip(3840, 2160, MAX_FRAMES + 4)
    assert len(data) < 2_000_000  # small on the wire, 0.6 GB as full RGB frames
    with _Peak(proc.pid) as peak:
        r = httpx.post(f"{url}/v1/analyze", files={"file": ("uhd.mp4", data, "video/mp4")}, headers=AUTH, timeout=180)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (3840, 2160)
    assert len(body["frames"]) == MAX_FRAMES and body["truncated"] is True
    assert "max_frames" in body["truncated_reason"]
    print(f"server RSS growth: {peak.growth_mb:.1f} MB")
    assert peak.growth_mb < GROWTH_MB, f"the server grew by {peak.growth_mb:.0f} MB"


def _huge_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (10000, 10000), (40, 90, 160)).save(buf, "PNG")
    return buf.getvalue()


def test_base64_and_path_of_a_huge_png_are_refused_from_its_header(server):
    """The 10000x10000 PNG as base64 and as a path under the data root: 413 from its header, the
    server barely grows (its pixels are never decoded)."""
    import base64

    url, proc, _ = server
    png = _huge_png()
    (DATA_ROOT[0] / "big.png").write_bytes(png)
    for body in ({"image": base64.b64encode(png).decode()}, {"path": "big.png"}):
        with _Peak(proc.pid) as peak:
            r = httpx.post(f"{url}/v1/analyze", json=body, headers=AUTH, timeout=60)
        assert r.status_code == 413, r.text
        assert "10000x10000 pixels is more than the limit" in r.json()["detail"]
        print(f"server RSS growth: {peak.growth_mb:.1f} MB")
        assert peak.growth_mb < GROWTH_MB / 2, f"the server grew by {peak.growth_mb:.0f} MB"


def test_chunked_json_over_the_limit_is_refused_unread(server):
    """60 MB of JSON base64, chunked (no Content-Length), over the 50 MiB limit: 413 while it
    arrives; the server does not hold it."""
    url, proc, _ = server

    def chunks():
        yield b'{"image": "'
        for _ in range(60):
            yield b"QUJD" * 250_000
        yield b'"}'

    with _Peak(proc.pid) as peak:
        r = httpx.post(f"{url}/v1/analyze", content=chunks(), headers=AUTH | {"Content-Type": "application/json"}, timeout=120)
    assert r.status_code == 413 and "over the limit" in r.json()["detail"], r.text[:300]
    print(f"server RSS growth: {peak.growth_mb:.1f} MB")
    assert peak.growth_mb < GROWTH_MB, f"the server grew by {peak.growth_mb:.0f} MB"


def test_json_path_through_a_symlink_out_of_the_data_root_is_refused(server):
    url, _, _ = server
    for p in ("linked/evil.mp4", "dirlink/secret.mp4", "../" * 8 + "etc/passwd", "/etc/passwd"):
        r = httpx.post(f"{url}/v1/analyze", json={"path": p}, headers=AUTH, timeout=30)
        assert r.status_code == 400 and "points outside the data root" in r.json()["detail"], (p, r.text)


def test_8k_clip_is_refused_from_its_header(server):
    url, proc, _ = server
    data = _clip(7680, 4320, 1)
    with _Peak(proc.pid) as peak:
        r = httpx.post(f"{url}/v1/analyze", files={"file": ("8k.mp4", data, "video/mp4")}, headers=AUTH, timeout=180)
    assert r.status_code == 413, r.text
    assert "7680x4320 pixels per frame is more than the clip limit" in r.json()["detail"]
    print(f"server RSS growth: {peak.growth_mb:.1f} MB")
    assert peak.growth_mb < GROWTH_MB, f"the server grew by {peak.growth_mb:.0f} MB"


def test_downscaled_clip_boxes_are_in_the_clip_pixels(server):
    """A clip of the photo enlarged to 2048 px is downscaled to 1024 px for the models; its boxes
    come back in the clip's own pixels (the photo's, times the enlargement)."""
    import cv2

    url, _, _ = server
    img = cv2.imread(str(MULTI_FACE))[:, :, ::-1]
    h, w = img.shape[:2]
    f = 2048 / max(w, h)
    big = np.ascontiguousarray(cv2.resize(img, (round(w * f / 2) * 2, round(h * f / 2) * 2), interpolation=cv2.INTER_LINEAR))
    r = httpx.post(f"{url}/v1/analyze", files={"file": ("m.jpg", MULTI_FACE.read_bytes(), "image/jpeg")}, headers=AUTH, timeout=60)
    ref = sorted(f["box"] for f in r.json()["frames"][0]["faces"])
    r = httpx.post(f"{url}/v1/analyze", files={"file": ("m2.mp4", _clip_of(big, 2), "video/mp4")}, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (big.shape[1], big.shape[0])
    got = sorted(f["box"] for f in body["frames"][0]["faces"])
    assert len(got) == len(ref) >= 2
    np.testing.assert_allclose(np.array(got) / f, ref, atol=max(w, h) * 0.02)


def test_unauthenticated_body_is_not_read(server):
    """Headers announcing a 50 MB body, no token, 16 KiB of the body sent: the 401 comes back while
    the client still holds the rest (the body is never buffered)."""
    url, proc, port = server
    head = (
        "POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {50_000_000}\r\n\r\n"
    ).encode()
    with _Peak(proc.pid) as peak, socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="z.bin"\r\n\r\n' + b"z" * 16384)
        s.settimeout(10)
        reply = b""
        try:
            while chunk := s.recv(4096):  # the server closes the connection after its answer
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert b"bearer" in reply
    assert peak.growth_mb < GROWTH_MB


def test_authenticated_large_body_is_not_copied(server):
    """A 45 MB upload (under the 50 MiB limit) that is not an image: 415, and the server holds about
    one copy of it (the body is not buffered by the size limit on top of the form parser's copy)."""
    url, proc, _ = server
    junk = np.random.default_rng(0).integers(0, 256, 45_000_000, dtype=np.uint8).tobytes()
    with _Peak(proc.pid) as peak:
        r = httpx.post(f"{url}/v1/analyze", files={"file": ("junk.bin", junk, "application/octet-stream")}, headers=AUTH, timeout=120)
    assert r.status_code == 415, r.text[:500]
    print(f"server RSS growth: {peak.growth_mb:.1f} MB")
    assert peak.growth_mb < 45 + GROWTH_MB / 2, f"the server grew by {peak.growth_mb:.0f} MB"


def test_token_differing_after_4_characters(server):
    url, _, _ = server
    img = {"file": ("m.jpg", MULTI_FACE.read_bytes(), "image/jpeg")}
    for wrong in (TOKEN[:4] + "x" * (len(TOKEN) - 4), TOKEN[:-1], TOKEN + "x", TOKEN[:4]):
        r = httpx.post(f"{url}/v1/analyze", files=img, headers={"Authorization": f"Bearer {wrong}"}, timeout=30)
        assert r.status_code == 401, wrong
        assert r.json()["detail"] == "wrong bearer token"
    assert httpx.get(f"{url}/v1/jobs/{'0' * 32}", headers=AUTH).status_code == 404  # the right one passes


def test_48_concurrent_clips_are_all_served(server):
    """48 clip requests at once, each two model-call chunks (17 frames), under the default
    ``max_pending`` of 64: none is refused (the limit counts requests, not chunks)."""
    import asyncio

    url, _, _ = server
    data = _clip(96, 64, 17)

    async def go() -> list:
        async with httpx.AsyncClient(timeout=300) as c:
            one = lambda: c.post(f"{url}/v1/analyze", files={"file": ("c.mp4", data, "video/mp4")}, headers=AUTH)
            return await asyncio.gather(*[one() for _ in range(48)])

    rs = asyncio.run(go())
    assert [r.status_code for r in rs] == [200] * 48, [r.text[:200] for r in rs if r.status_code != 200][:3]
    assert all(len(r.json()["frames"]) == 17 for r in rs)


def test_pending_counts_requests_not_chunks(models):
    """Two admitted clip requests of 5 chunks each fit ``max_pending=2``; a third request does not."""
    import cv2

    from ferbatch.service.batcher import Batcher, Busy

    img = cv2.resize(cv2.imread(str(MULTI_FACE))[:, :, ::-1], (64, 48))
    b = Batcher(models, max_frames=2, max_wait_ms=0, max_pending=2)
    try:
        with b.admit(), b.admit():
            futs = [b.submit([img, img], admitted=True) for _ in range(10)]
            with pytest.raises(Busy, match="retry later"), b.admit():
                pass
            assert all(len(f.result(timeout=120)) == 2 for f in futs)
        assert b.pending == 0 and b.stats.refused == 1
        with b.admit():  # released: admitted again
            pass
    finally:
        b.close()


@pytest.mark.parametrize(
    "method, path, payload, status, words",
    [
        ("post", "/v1/jobs", {"input": "clips/\x00ok.mp4"}, 422, "null byte"),
        ("post", "/v1/jobs", {"input": "a" * 100_000}, 422, "body.input | String should have at most 4096 characters"),
        ("post", "/v1/jobs", {"input": 5}, 422, "body.input | Input should be a valid string"),
        ("get", "/v1/jobs/" + "f" * 10_000, None, 404, "32 hex digits"),
        ("get", "/v1/jobs/%00", None, 404, "32 hex digits"),
    ],
    ids=["jobs-nul", "jobs-100k", "jobs-not-a-string", "job-id-10k", "job-id-nul"],
)
def test_null_bytes_and_huge_fields_are_4xx(server, method, path, payload, status, words):
    url, _, _ = server
    r = httpx.request(method.upper(), f"{url}{path}", json=payload, headers=AUTH, timeout=30)
    assert r.status_code == status, r.text[:500]
    assert words in r.text
    assert len(r.text) < 2000  # the field is not echoed back whole


@pytest.mark.parametrize(
    "name, status, words",
    [
        ("a\x00b.png", 415, "b.png | not an image or a video"),
        ("y" * 500, 415, "y" * 77 + "... | not an image or a video"),
        ("x" * 100_000, 400, "Invalid multipart data"),
    ],
    ids=["nul", "500", "100k"],
)
def test_upload_names_with_null_bytes_or_100k_characters(server, name, status, words):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/analyze", files={"file": (name, b"not a picture\n" * 4, "image/png")}, headers=AUTH, timeout=30)
    assert r.status_code == status, r.text[:500]
    assert words in r.json()["detail"] and len(r.text) < 1000


def test_resolve_input_rejects_bad_paths(tmp_path):
    from ferbatch.config import JobConfig
    from ferbatch.errors import ConfigError
    from ferbatch.service.jobs import JobManager

    mgr = JobManager(tmp_path, tmp_path / "jobs", JobConfig())
    try:
        with pytest.raises(ConfigError, match="null byte"):
            mgr.resolve_input("a\x00b")
        with pytest.raises(ConfigError, match="longer than a path can be"):
            mgr.resolve_input("a" * 100_000)
        with pytest.raises(ConfigError, match="cannot be read|no such file"):
            mgr.resolve_input("a" * 300)  # one component over NAME_MAX
    finally:
        mgr.close()


def test_symlink_out_of_the_data_root_is_refused(server):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/jobs", json={"input": "linked"}, headers=AUTH, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "input 'linked' | linked/evil.mp4 is a symlink to a path outside the data root; refused"
    r = httpx.post(f"{url}/v1/jobs", json={"input": "."}, headers=AUTH, timeout=30)
    assert r.status_code == 400 and "is a symlink to a path outside the data root" in r.json()["detail"]
    for direct in ("linked/evil.mp4", "dirlink", "dirlink/secret.mp4"):
        r = httpx.post(f"{url}/v1/jobs", json={"input": direct}, headers=AUTH, timeout=30)
        assert r.status_code == 400 and "points outside the data root" in r.json()["detail"], (direct, r.text)
