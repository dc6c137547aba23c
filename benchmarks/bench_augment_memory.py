"""Peak memory of ``extract(augment=N)`` on one image (#24: 20,000 views peaked at 5.2 GB).

Each run is a fresh process (its peak resident memory is ``ru_maxrss``):
MobileNetV2, random weights, 64 px, batch_size=32, no cache, in memory.

    python benchmarks/bench_augment_memory.py [N_VIEWS ...]
"""

import json
import subprocess
import sys

CHILD = r"""
import resource, sys, time, numpy as np
from PIL import Image
n = int(sys.argv[1]); path = sys.argv[2]
Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
from skbottleneck import CNNFeatureTransformer
cnn = CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0, input_size=64,
                            cache_dir=None, runtime="tensorflow").fit()
cnn.transform([path])  # the model built and traced: what is left is the views' cost
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
rows = cnn.extract([path], augment=n).features.shape[0]
print(json.dumps({"n_views": n, "rows": rows, "s": round(time.perf_counter() - t0, 1),
                  "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "before_views_mib": round(base)}))
""".replace("import resource", "import json, resource")


def main(sizes):
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), f"/tmp/bench_aug_{n}.png"],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000])
