"""int8 on vision transformers (keras-hub DINOv2, CLIP, SigLIP): NNCF's default
scheme, which ``precision="int8"`` applies to CNNs, against its transformer
scheme, which it applies to the keras-hub presets.

No pretrained weights are needed (none can be downloaded here): each family
(DINOv2 also with 4 register tokens, as ``dinov2_with_registers_*``)
is built with random weights from a config, saved with its image converter
by ``save_to_preset(dir)`` and read back by path, as a user's preset is:

- ``tiny``: the tests' presets (2 layers, 32 wide, 56 px);
- ``small``: ViT-S's shape (12 layers, 384 wide, 6 heads, MLP 1536), patch
  14, at 112 px (64 patches; 224 px takes four times as long on 2 cores).

The transformer's own graph (uint8 in, the converter's scale and offset,
the network, the default pooling) is converted to OpenVINO and quantised
with each setting on 64 evenly spread training images, as
``precision="int8"`` does. Reported on the test images: the cosine of each
image's int8 features to its float32 ones (median and lowest), the same
after subtracting the float32 mean feature (random weights map all images
near one direction, which flatters a plain cosine), the accuracy of the
same head (StandardScaler + LogisticRegression(C=0.1)) trained on each
variant's own training features, and CNN speed against float32.

    python benchmarks/bench_int8_vit.py [--families dinov2,clip,siglip] [--sizes tiny,small]
"""

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_result  # noqa: E402
from bench_augment import head, photo_task  # noqa: E402

SHAPES = {"tiny": dict(num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64, size=56),
          "small": dict(num_layers=12, hidden_dim=384, num_heads=6, intermediate_dim=1536,
                        size=112)}


def make_preset(family, shape, folder):
    """A random-weight preset folder of ``family`` with ``shape`` (seeded)."""
    import keras
    import keras_hub

    models, layers = keras_hub.models, keras_hub.layers
    keras.utils.set_random_seed(0)
    shape = dict(shape)
    size = shape.pop("size")
    image = (size, size, 3)
    if family.startswith("dinov2"):
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        registers = 4 if family == "dinov2_registers" else 0
        models.DINOV2Backbone(patch_size=14, image_shape=image, position_embedding_shape=image,
                              num_register_tokens=registers, **shape).save_to_preset(folder)
        layers.DINOV2ImageConverter(image_size=(size, size), scale=list(1 / (255 * std)),
                                    offset=list(-mean / std)).save_to_preset(folder)
        return folder
    text = dict(embedding_dim=32, hidden_dim=32, num_layers=1, num_heads=2, intermediate_dim=64,
                max_sequence_length=8, vocabulary_size=16)
    if family == "clip":
        vision = models.CLIPVisionEncoder(patch_size=14, image_shape=image, **shape)
        models.CLIPBackbone(vision, models.CLIPTextEncoder(**text),
                            projection_dim=shape["hidden_dim"]).save_to_preset(folder)
        layers.CLIPImageConverter(image_size=(size, size), scale=1 / 255.0,
                                  offset=0.0).save_to_preset(folder)
    else:
        vision = models.SigLIPVisionEncoder(patch_size=14, image_shape=image, **shape)
        models.SigLIPBackbone(vision, models.SigLIPTextEncoder(**text)).save_to_preset(folder)
        layers.SigLIPImageConverter(image_size=(size, size), scale=1 / 127.5,
                                    offset=-1.0).save_to_preset(folder)
    return folder


def run(family, size_name, task, root):
    import nncf
    import openvino as ov

    from skbottleneck import CNNFeatureTransformer
    from skbottleneck.extraction import ExtractionEngine
    from skbottleneck.extraction._openvino import convert_graph
    from skbottleneck.images import load_image

    nncf.set_log_level(logging.ERROR)
    X_train, y_train, X_test, y_test, _ = task
    preset = make_preset(family, SHAPES[size_name], root / f"{family}_{size_name}")
    cnn = CNNFeatureTransformer(str(preset), runtime="tensorflow", cache_dir=None).fit()
    size = cnn.input_size_
    model = convert_graph(ExtractionEngine(cnn).runner, "transformer")  # as the package does
    core = ov.Core()
    train = np.stack([load_image(p, size) for p in X_train]).astype("uint8")
    test = np.stack([load_image(p, size) for p in X_test]).astype("uint8")
    calib = train[np.linspace(0, len(train) - 1, 64).astype(int)]

    def features(m, images):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(images[i:i + 16])[0] for i in range(0, len(images), 16)])

    def speed(m, rounds=3):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        batches = [test[i:i + 16] for i in range(0, len(test) - 15, 16)]
        compiled(batches[0])
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for b in batches:
                compiled(b)
            times.append(time.perf_counter() - t)
        return 16 * len(batches) / statistics.median(times)

    def cosine(a, b):
        return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)

    f32 = features(model, train), features(model, test)
    acc32 = head().fit(f32[0], y_train).score(f32[1], y_test)
    speed32 = speed(model)
    name = f"{family} {size_name}"
    rows = [[name, "float32", "", "", f"{acc32:.3f}", "", "1.00"]]
    settings = {"default scheme (CNNs)": None, "transformer scheme (presets)":
                nncf.ModelType.TRANSFORMER}
    for label, model_type in settings.items():
        samples = [calib[i:i + 1] for i in range(len(calib))]
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            q = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                              model_type=model_type, advanced_parameters=(
                                  nncf.AdvancedQuantizationParameters(
                                      overflow_fix=nncf.OverflowFix.ENABLE)),
                              ignored_scope=nncf.IgnoredScope(types=["GroupConvolution"],
                                                              validate=False))
        quantise_s = time.perf_counter() - t
        f8 = features(q, train), features(q, test)
        acc8 = head().fit(f8[0], y_train).score(f8[1], y_test)
        cos = cosine(f8[1], f32[1])
        mean = f32[0].mean(axis=0)
        centred = cosine(f8[1] - mean, f32[1] - mean)
        rows.append([name, label, f"{np.median(cos):.4f} (min {cos.min():.4f})",
                     f"{np.median(centred):.4f} (min {centred.min():.4f})", f"{acc8:.3f}",
                     f"**{100 * (acc8 - acc32):+.1f}**",
                     f"{speed(q) / speed32:.2f} (quantised in {quantise_s:.0f} s)"])
        print(rows[-1], flush=True)
    return rows, f"- {name}: {size[0]} px, float32 CNN {speed32:.1f} images/s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="dinov2,dinov2_registers,clip,siglip")
    parser.add_argument("--sizes", default="tiny,small")
    args = parser.parse_args()
    task = photo_task(20, 20)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size_name in args.sizes.split(","):
            for family in args.families.split(","):
                r, note = run(family, size_name, task, Path(tmp))
                rows += r
                notes.append(note)
    body = (
        "Random-weight keras-hub presets (see the script's docstring), converted as the "
        "transformer converts them and quantised by NNCF on 64 evenly spread training images "
        "(overflow fix in every layer, as precision='int8' does), with NNCF's default scheme "
        "and with its transformer scheme. Cosine of int8 to float32 test features; the same "
        "with the float32 mean feature subtracted; accuracy of StandardScaler + "
        "LogisticRegression(C=0.1) trained on each variant's own training features ('points': "
        "int8 minus float32); CNN speed: images/s of batches of 16 against float32 (medians of "
        "3 passes, one stream: a rough guide).\n\n"
        + markdown_table(["preset", "variant", "cosine (median)", "centred cosine (median)",
                          "accuracy", "points", "CNN speed / float32"], rows)
        + f"\n\n- photos: {len(task[0])} training / {len(task[2])} test images\n"
        + "\n".join(notes)
    )
    write_result("bench_int8_vit", "int8 on vision transformers: NNCF's default scheme "
                 "against its transformer scheme", body,
                 libs=("openvino", "nncf", "keras-hub", "keras", "numpy", "scikit-learn"))


if __name__ == "__main__":
    main()
