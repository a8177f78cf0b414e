"""A live stream for tests, without an ffmpeg binary: PyAV remuxes a clip (no re-encoding) as
MPEG-TS to a TCP or HTTP listener on 127.0.0.1, at real-time pace, looping, one client at a time.

    python tests/stream_server.py CLIP tcp://127.0.0.1:PORT      (or http://127.0.0.1:PORT)

Stop it by its pid.
"""

from __future__ import annotations

import sys
import time

import av


def serve(clip: str, url: str) -> None:
    while True:  # one client per listen; listen again when it goes away
        try:
            target = url + "?listen=1" if url.startswith("tcp://") else url  # tcp takes it in the URL, http as an option
            with av.open(target, "w", format="mpegts", options={"listen": "1"}) as out:
                _stream(clip, out)
        except (av.error.FFmpegError, OSError) as e:
            print(f"client gone: {e}", file=sys.stderr, flush=True)
            time.sleep(0.1)


def _stream(clip: str, out) -> None:
    t0 = time.monotonic()
    offset = 0.0  # seconds added per loop so timestamps keep increasing
    ost = None
    while True:
        with av.open(clip) as inp:
            ist = inp.streams.video[0]
            if ost is None:
                ost = out.add_stream_from_template(ist)
            tb = float(ist.time_base)
            last = 0.0
            for pkt in inp.demux(ist):
                if pkt.dts is None:
                    continue
                t = pkt.dts * tb
                last = max(last, t)
                wait = t0 + offset + t - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                shift = round(offset / tb)
                pkt.dts += shift
                if pkt.pts is not None:
                    pkt.pts += shift
                pkt.stream = ost
                out.mux(pkt)
            offset += last + 0.05


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
