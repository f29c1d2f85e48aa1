"""Which file-system layer reads Parquet from an S3-compatible store best: pyarrow.fs, s3fs (fsspec)
or obstore. One 100k x 100 float32 Parquet object (about 40 MB) on a real SeaweedFS on loopback;
each layer lists the prefix and reads the object into row batches, three times, in its own process
(peak RSS from getrusage). s3fs and obstore are not Nova dependencies: install them to run this
(`.venv/bin/pip install s3fs obstore`); a layer that is not installed is reported as such.

    python bench/fs_layers.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT), str(ROOT / "trainer_image")]
from _common import table, write_result  # noqa: E402

REPEATS = 3


def read(layer: str, endpoint: str, key: str, secret: str, path: str) -> dict:
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    rows = 0
    for _ in range(REPEATS):
        if layer == "pyarrow.fs":
            import pyarrow.fs as pafs

            fs = pafs.S3FileSystem(access_key=key, secret_key=secret, endpoint_override=endpoint.split("://")[1],
                                   scheme="http", region="us-east-1")
            fs.get_file_info(pafs.FileSelector(path.rsplit("/", 1)[0]))
            with fs.open_input_file(path) as f:
                rows += sum(b.num_rows for b in pq.ParquetFile(f).iter_batches(batch_size=100_000))
        elif layer == "s3fs":
            import s3fs

            fs = s3fs.S3FileSystem(key=key, secret=secret, client_kwargs={"endpoint_url": endpoint,
                                                                         "region_name": "us-east-1"})
            fs.ls(path.rsplit("/", 1)[0])
            with fs.open(path, "rb") as f:
                rows += sum(b.num_rows for b in pq.ParquetFile(f).iter_batches(batch_size=100_000))
        else:
            import io

            import obstore
            from obstore.store import S3Store

            bucket, _, rest = path.partition("/")
            store = S3Store(bucket, endpoint=endpoint, access_key_id=key, secret_access_key=secret,
                            region="us-east-1", client_options={"allow_http": True})
            list(obstore.list(store, prefix=rest.rsplit("/", 1)[0]))
            data = obstore.get(store, rest).bytes()
            rows += sum(b.num_rows for b in pq.ParquetFile(io.BytesIO(bytes(data))).iter_batches(batch_size=100_000))
    return {"seconds_per_read": (time.perf_counter() - t0) / REPEATS, "rows": rows // REPEATS,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        try:
            print(json.dumps(read(*sys.argv[2:])))
        except ImportError as exc:
            print(json.dumps({"error": f"not installed ({exc.name})"}))
        return
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.s3.server import ACCESS_KEY, SECRET_KEY, start_s3

    server = start_s3()
    try:
        bucket = server.make_bucket("layers")
        rng = np.random.default_rng(0)
        X = rng.standard_normal((100_000, 100), dtype=np.float32)
        with server.filesystem().open_output_stream(f"{bucket}/u/part-0000.parquet") as f:
            pq.write_table(pa.table({f"f{j:03d}": X[:, j] for j in range(100)}), f)
        results = {}
        for layer in ("pyarrow.fs", "s3fs", "obstore"):
            out = subprocess.run([sys.executable, __file__, "--child", layer, server.endpoint, ACCESS_KEY, SECRET_KEY,
                                  f"{bucket}/u/part-0000.parquet"], capture_output=True, text=True)
            results[layer] = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                              else {"error": out.stderr.strip().splitlines()[-1][:200]})
    finally:
        server.destroy()
    path = write_result("fs_layers", {"object_mb": 40, "repeats": REPEATS, "layers": results})
    print(table(["layer", "s per read (40 MB)", "peak RSS (MiB)"],
                [[k, v.get("seconds_per_read", v.get("error")), round(v["peak_rss_mib"]) if "peak_rss_mib" in v
                  else "-"] for k, v in results.items()]))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
