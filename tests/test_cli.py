"""The ``skbottleneck`` command on real image folders.

Every run uses a real (small, seeded) Keras model: VGG16 with random weights
at 32 px unless a test says otherwise, and a private feature cache
(``SKBOTTLENECK_CACHE_DIR``).

Most runs call the command's ``main`` in this process, with the run's own
environment, working folder, stdout and stderr (a new Python process costs
~10 s of TensorFlow start-up here); the runs that are about the process itself
(the ``python -m skbottleneck`` entry point, signals, concurrent processes,
what a fresh interpreter imports) start one (``process=True`` or Popen).
"""

import contextlib
import csv
import inspect
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import joblib
import numpy as np
import pytest

from skbottleneck import FeatureStore

SMALL = ["--backbone", "vgg16", "--weights", "none", "--random-state", "0", "--input-size", "32"]
TF_NOISE = ("oneDNN", "cuInit", "absl::InitializeLog", "cpu_feature_guard")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def env(workdir):
    env = dict(os.environ)
    env["SKBOTTLENECK_CACHE_DIR"] = str(workdir / "cache")
    env.pop("SKBOTTLENECK_TRACEBACK", None)
    return env


@pytest.fixture(scope="module")
def photos(workdir):
    from skbottleneck.datasets import make_photo_folder

    return make_photo_folder(workdir / "photos", n_per_class=8, size=(40, 40), random_state=0)


def run(args, env, cwd=None, timeout=300, process=False):
    """Run ``skbottleneck ARGS`` with ``env`` in ``cwd``; returns a CompletedProcess.

    ``process=True``: as ``python -m skbottleneck ARGS`` in a new process;
    otherwise through ``main(ARGS)`` here (``timeout`` then does not apply).
    """
    args = [str(a) for a in args]
    if process:
        return subprocess.run([sys.executable, "-m", "skbottleneck", *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
    from skbottleneck.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:  # argparse's --help and --version
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["skbottleneck", *args], code, out.getvalue(),
                                       err.getvalue())


def ok(args, env, **kw):
    result = run(args, env, **kw)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("skbottleneck: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def store(workdir, photos, env):
    out = workdir / "features.h5"
    # a new process: the ``python -m skbottleneck`` entry point itself
    result = ok(["extract", photos, *SMALL, "--out", out], env, process=True)
    assert "wrote 32 images x 512 features" in result.stdout
    return out


@pytest.fixture(scope="module")
def model(workdir, store, env):
    out = workdir / "model.joblib"
    result = ok(["train", store, "--head", "logreg", "--epochs", "20", "--out", out], env)
    assert "validation accuracy:" in result.stdout
    return out


# ------------------------------------------------------------------ no model
def test_help_version_and_no_command(env):
    result = ok(["--help"], env)
    for command in ("backbones", "extract", "train", "evaluate", "predict", "cache"):
        assert command in result.stdout
    assert "exit status" in result.stdout
    assert ok(["--version"], env).stdout.startswith("skbottleneck ")
    assert run([], env).returncode == 2


def test_backbones_table_and_json(env, tmp_path):
    keras_home = tmp_path / "keras"
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    env = dict(env, KERAS_HOME=str(keras_home))
    table = ok(["backbones"], env).stdout
    lines = {line.split()[0]: line for line in table.splitlines() if line and line[0].islower()}
    assert "yes (bundled)" in lines["efficientnet_lite0"]
    assert "yes (Keras cache)" in lines["vgg16"]
    assert "no (download)" in lines["vgg19"]
    assert lines["resnet50"].split()[1:3] == ["224", "2048"]
    rows = {r["name"]: r for r in json.loads(ok(["backbones", "--format", "json"], env).stdout)}
    assert rows["efficientnet_lite0"]["imagenet_offline"] is True
    assert rows["vgg16"]["imagenet_weights"] == "cached"
    assert rows["inception_v3"]["default_size"] == 299


@pytest.mark.parametrize("args, fragments", [
    (["extract", "no_such_dir", "--out", "f.h5"], ["'no_such_dir' does not exist"]),
    (["extract", "--out", "f.h5"], ["IMAGE_DIR or --file-list"]),
    (["extract", ".", "--out", "f.h5", "--pooling", "mean"], ["--pooling", "'mean'"]),
    (["extract", ".", "--out", "f.h5", "--input-size", "big"], ["--input-size"]),
    (["extract", ".", "--out", "f.h5", "--backbone", "resnet5"], ["Did you mean 'resnet50'"]),
    (["extract", ".", "--out", "no_such_dir/f.h5"], ["folder", "does not exist"]),
    (["extract", ".", "--out", "f.h5", "--weights", "missing.weights.h5"], ["weights file"]),
    (["train", "missing.h5", "--out", "m.joblib"], ["feature store 'missing.h5' does not exist"]),
    (["train", "x.h5", "--head", "svm", "--out", "m.joblib"], ["--head"]),
    (["train", "x.h5", "--val-fraction", "1.5", "--out", "m.joblib"], ["--val-fraction"]),
    (["predict", "missing.joblib", "a.jpg"], ["model file 'missing.joblib' does not exist"]),
    (["evaluate", "missing.joblib", "."], ["model file 'missing.joblib' does not exist"]),
    (["cache", "info", "--cache-dir", "no_such_dir"], ["cache folder"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_usage_errors_exit_2_with_one_line(args, fragments, env, tmp_path):
    assert_one_line_error(run(args, env, cwd=tmp_path), 2, *fragments)


def test_files_of_the_wrong_kind(env, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run(["train", "notes.txt", "--out", "m.joblib"], env, cwd=tmp_path), 2,
                          "not a readable feature store")
    assert_one_line_error(run(["predict", "notes.txt", "a.jpg"], env, cwd=tmp_path), 2,
                          "not a model file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write anywhere")
def test_no_write_permission(env, tmp_path, photos):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_one_line_error(run(["extract", photos, "--out", locked / "f.h5"], env), 2,
                              "permission denied")
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------ extract
def test_extract_writes_a_labelled_store(store, photos, env):
    with FeatureStore(store) as fs:
        assert fs.shape == (32, 512)
        assert sorted(set(fs.labels)) == ["astronaut", "chelsea", "coffee", "rocket"]
        assert all(p.startswith(str(photos)) for p in fs.paths)
        assert json.loads(fs.metadata["fingerprint"])["backbone"] == "vgg16"


def test_extract_output_is_clean_and_rerun_is_free(store, photos, env):
    result = ok(["extract", photos, *SMALL, "--out", store], env)
    assert "0 through the CNN" in result.stdout
    for noise in TF_NOISE:
        assert noise not in result.stderr


def test_extract_runtime_is_chosen_and_said(store, photos, env, tmp_path):
    pytest.importorskip("openvino")
    from _features import assert_same_features

    env = dict(env, SKBOTTLENECK_CACHE_DIR=str(tmp_path / "cache"))  # nothing cached yet
    outs = {}
    for runtime in ("tensorflow", "openvino"):
        outs[runtime] = tmp_path / f"{runtime}.h5"
        result = ok(["extract", photos, *SMALL, "--runtime", runtime, "--no-cache",
                     "--out", outs[runtime]], env)
        assert f"32 through the CNN on {runtime}" in result.stdout
    with FeatureStore(outs["tensorflow"]) as tf_store, FeatureStore(outs["openvino"]) as ov:
        assert_same_features(ov.to_numpy(), tf_store.to_numpy())
    result = run(["extract", photos, *SMALL, "--runtime", "onnx", "--out", tmp_path / "x.h5"],
                 env)
    assert result.returncode == 2 and "--runtime" in result.stderr


def test_extract_int8_calibrates_on_training_images_and_test_images_reuse_it(store, photos, env,
                                                                             workdir, tmp_path):
    """--precision int8 on the training folder; --calibration-store gives the test
    folder the same int8 model; a head of one precision is refused on the other."""
    pytest.importorskip("nncf")
    from skbottleneck.datasets import make_photo_folder

    test_photos = make_photo_folder(workdir / "test_photos", n_per_class=3, size=(40, 40),
                                    random_state=1)
    train8, test8 = tmp_path / "train8.h5", tmp_path / "test8.h5"
    result = ok(["extract", photos, *SMALL, "--precision", "int8", "--out", train8], env)
    assert "32 through the CNN on openvino (int8)" in result.stdout
    assert "int8" in result.stderr  # the first line says which model
    result = ok(["extract", test_photos, "--calibration-store", train8, "--out", test8], env)
    assert "12 through the CNN on openvino (int8)" in result.stdout
    with FeatureStore(train8) as a, FeatureStore(test8) as b:
        assert a.metadata["fingerprint"] == b.metadata["fingerprint"]  # one calibration
        assert json.loads(a.metadata["fingerprint"])["precision"] == "int8"
    model = tmp_path / "model8.joblib"
    ok(["train", train8, "--head", "logreg", "--epochs", "5", "--out", model], env)
    ok(["evaluate", model, test8, "--report", tmp_path / "report8"], env)
    # the int8 model on the float32 store of the same images: refused, saying why
    result = run(["evaluate", model, store, "--report", tmp_path / "wrong"], env)
    assert_one_line_error(result, 2, "holds float32 features", "precision='int8'")
    # the store gives the model: model flags are refused, and so is a float32 store
    result = run(["extract", test_photos, "--calibration-store", train8, "--backbone",
                  "resnet50", "--out", tmp_path / "x.h5"], env)
    assert_one_line_error(result, 2, "--calibration-store takes the model", "drop --backbone")
    result = run(["extract", test_photos, "--calibration-store", store, "--out",
                  tmp_path / "y.h5"], env)
    assert_one_line_error(result, 2, "needs a store of int8 features", "holds float32")
    # an explicit float32 contradicts the int8 model of the store (it wrote int8)
    result = run(["extract", test_photos, "--calibration-store", train8, "--precision",
                  "float32", "--out", tmp_path / "z.h5"], env)
    assert_one_line_error(result, 2, "--calibration-store takes the model",
                          "drop --precision float32")
    assert not (tmp_path / "z.h5").exists()


@pytest.mark.parametrize("content, byte", [
    (b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00", "0x89"),  # an HDF5 store given by mistake
    (b"a.jpg\tcat\nb.jpg\x00\x00\tdog\n", "0x00"),  # UTF-8, but with NUL bytes
])
def test_a_binary_file_list_is_refused_naming_it(tmp_path, content, byte):
    from skbottleneck.cli import CLIError
    from skbottleneck.cli._files import read_file_list

    listing = tmp_path / "features.h5"
    listing.write_bytes(content)
    with pytest.raises(CLIError, match=rf"file list '.*features.h5' is not a text file "
                                       rf"\(line \d holds byte {byte}\); expected one PATH"):
        read_file_list(str(listing))


@pytest.mark.slow
def test_ctrl_c_just_after_wrote_exits_with_one_line(photos, env, tmp_path):
    """A SIGINT while the interpreter shuts down (threads joined) printed a
    traceback from the threading module; now one line and status 130."""
    out = tmp_path / "f.h5"
    proc = subprocess.Popen([sys.executable, "-m", "skbottleneck", "extract", str(photos), *SMALL,
                             "--no-cache", "--out", str(out), "-q"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "wrote" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    # -SIGINT: the signal came after the interpreter had given SIGINT back to the
    # system (the last steps of its shutdown); a shell shows that as 130 too
    assert proc.returncode in (0, 130, -signal.SIGINT), stderr
    if proc.returncode == -signal.SIGINT:
        assert stderr == "", stderr
    if proc.returncode == 130:
        # the signal came before the command had returned (a loaded machine) or after
        assert stderr.splitlines() in (
            ["skbottleneck: error: interrupted after the command had finished (its output is "
             "complete)"],
            ["skbottleneck: error: interrupted (rerun the same command to resume; finished "
             "batches are kept)"]), stderr
    with FeatureStore(out) as fs:
        assert len(fs) == 32


def test_extract_from_a_file_list(store, photos, env, tmp_path):
    images = sorted((photos / "coffee").glob("*.jpg"))[:3] + sorted((photos / "rocket").glob("*.jpg"))[:3]
    listing = tmp_path / "list.txt"
    lines = ["# path<TAB>label"] + [f"{os.path.relpath(p, tmp_path)}\t{p.parent.name}" for p in images]
    listing.write_text("\n".join(lines) + "\n")
    out = tmp_path / "subset.h5"
    ok(["extract", "--file-list", listing, *SMALL, "--out", out, "-q"], env)
    with FeatureStore(out) as fs:
        assert fs.labels.tolist() == ["coffee"] * 3 + ["rocket"] * 3
        assert [os.path.realpath(p) for p in fs.paths] == [os.path.realpath(p) for p in images]
    # another image list into an existing store: refused unless --overwrite
    result = run(["extract", "--file-list", listing, *SMALL, "--out", store, "-q"], env)
    assert_one_line_error(result, 2, "already exists", "--overwrite")


def test_extract_bad_image_fails_or_is_skipped(photos, env, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "coffee" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "rocket" / "empty.png").write_bytes(b"")
    out = tmp_path / "f.h5"

    result = run(["extract", folder, *SMALL, "--out", out, "-q"], env)
    assert_one_line_error(result, 1, "--on-error skip")
    assert "broken.jpg" in result.stderr or "empty.png" in result.stderr
    assert not out.exists()

    result = ok(["extract", folder, *SMALL, "--out", out, "-q", "--on-error", "skip"], env)
    assert "2 unreadable images were left out" in result.stderr
    errors = (tmp_path / "f.h5.errors.csv").read_text().splitlines()
    assert errors[0] == "path,reason"
    assert sorted(line.split(",")[0].rsplit("/", 1)[1] for line in errors[1:]) == [
        "broken.jpg", "empty.png"]
    with FeatureStore(out) as fs:
        assert len(fs) == 32
        assert not any(p.endswith(("broken.jpg", "empty.png")) for p in fs.paths)


@pytest.mark.slow
def test_extract_interrupted_then_resumed(photos, env, tmp_path):
    out = tmp_path / "f.h5"
    args = [sys.executable, "-m", "skbottleneck", "extract", str(photos), *SMALL, "--no-cache",
            "--batch-size", "1", "--decode-threads", "1", "--out", str(out), "-q"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "f.h5.partial" / "done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_dir() and len(os.listdir(journal)) >= 2:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("extraction finished before it could be interrupted")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "resume" in stderr
    assert not out.exists()
    result = ok(["extract", photos, *SMALL, "--no-cache", "--out", out, "-q"], env)
    n_extracted = int(result.stdout.split("(")[-1].split()[0])
    assert 0 < n_extracted < 32  # only the rows the first run had not written
    with FeatureStore(out) as fs:
        assert len(fs) == 32


# ---------------------------------------------------------- train / predict
def test_train_saves_a_pipeline_that_predicts_images(model, photos):
    pipeline = joblib.load(model)
    assert [name for name, _ in pipeline.steps] == ["features", "head"]
    params = pipeline.named_steps["features"].get_params()
    assert params["backbone"] == "vgg16" and params["weights"] is None
    assert params["random_state"] == 0 and tuple(params["input_size"]) == (32, 32)
    paths = sorted(str(p) for p in photos.glob("*/*.jpg"))
    predicted = pipeline.predict(paths)
    truth = [os.path.basename(os.path.dirname(p)) for p in paths]
    assert np.mean(predicted == np.asarray(truth)) >= 0.75


@pytest.mark.parametrize("head, extra", [
    ("sgd", ["-p", "alpha=1e-3", "--epochs", "3"]),
    ("mlp", ["-p", "hidden_layer_sizes=(32,)", "--epochs", "3"]),
])
def test_train_other_heads(store, env, tmp_path, head, extra):
    out = tmp_path / "m.joblib"
    result = ok(["train", store, "--head", head, *extra, "--val-fraction", "0.25", "--out", out], env)
    accuracy = float(result.stdout.split("validation accuracy:")[1].split()[0])
    assert 0.0 <= accuracy <= 1.0
    assert "(8 held-out rows)" in result.stdout
    assert joblib.load(out).named_steps["head"].get_params()["epochs"] == 3


def test_train_logreg_is_exact_when_the_store_fits_in_memory(store, photos, env, tmp_path):
    from sklearn.linear_model import LogisticRegression

    out = tmp_path / "exact.skops"
    result = ok(["train", store, "--out", out], env)  # --head logreg is the default
    assert "solver: exact (L-BFGS in memory" in result.stderr
    assert "exact solver" in result.stdout and "validation accuracy:" in result.stdout
    import skops.io

    pipeline = skops.io.load(out, trusted=skops.io.get_untrusted_types(file=str(out)))
    assert [name for name, _ in pipeline.steps] == ["features", "scale", "head"]
    head = pipeline.named_steps["head"]
    assert isinstance(head, LogisticRegression) and head.C == 0.1
    # a safe model file (sklearn's own types only, beyond the package's) that predicts images
    assert not [t for t in skops.io.get_untrusted_types(file=str(out))
                if not t.startswith("skbottleneck.")]
    paths = sorted(str(p) for p in photos.glob("*/*.jpg"))
    truth = [os.path.basename(os.path.dirname(p)) for p in paths]
    assert np.mean(pipeline.predict(paths) == np.asarray(truth)) >= 0.75


def test_choose_head_is_the_library_policy_the_cli_uses(store):
    """The exact-vs-SGD choice is a public function, called from Python on a real store."""
    from skbottleneck import FeatureStore, IncrementalClassifier
    from skbottleneck.heads import choose_head, exact_logreg, fit_head, memory_budget

    with FeatureStore(store) as fs:  # 32 rows x 512 features: 256 KiB for the exact solver
        head, solver, why = choose_head(fs, params={"C": 1.0}, memory_budget="1MiB")
        assert (solver, why) == ("exact", "exact (L-BFGS in memory: 256.0 KiB of a 1.0 MiB "
                                          "budget)")
        assert head.named_steps["head"].C == 1.0
        assert fit_head(head, fs).score(*fs.read_rows(np.arange(len(fs)))) > 0.5
        choice = choose_head(fs, memory_budget=200 * 1024)
        assert choice.solver == "sgd" and isinstance(choice.head, IncrementalClassifier)
        assert choice.reason == ("SGD out of core (the rows in memory would take 256.0 KiB, over "
                                 "the 200.0 KiB budget)")
        assert fit_head(choice.head, fs).n_iter_ == 10
    # a parameter only SGD has, or epochs, asks for the out-of-core loop; other heads are SGD
    assert choose_head((26, 512), params=[("alpha", 1e-3)]).reason == (
        "SGD out of core (parameter alpha is one only SGD has)")
    assert choose_head(np.zeros((26, 512)), epochs=3).solver == "sgd"
    assert choose_head((26, 512), "mlp").solver == "sgd"
    assert memory_budget("auto") >= 256 * 2**20
    with pytest.raises(ValueError, match="memory_budget: expected a size"):
        choose_head((26, 512), memory_budget="lots")
    with pytest.raises(ValueError, match="no parameter 'alpha'; its parameters are: C"):
        exact_logreg([("alpha", 1e-3)])


def test_train_logreg_trains_out_of_core_when_over_the_memory_budget(store, env, tmp_path,
                                                                     monkeypatch):
    from skbottleneck import IncrementalClassifier
    from skbottleneck.cli._parser import build_parser
    from skbottleneck.cli._train import cmd_train

    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", env["SKBOTTLENECK_CACHE_DIR"])
    out = tmp_path / "m.joblib"
    args = build_parser().parse_args(["train", str(store), "--out", str(out), "-q"])
    # 26 training rows x 512 features take 208 KiB in memory with the exact solver
    args.memory_budget = "64KiB"
    assert cmd_train(args) == 0
    head = joblib.load(out).named_steps["head"]
    assert isinstance(head, IncrementalClassifier) and head.n_iter_ == head.epochs == 10
    # the out-of-core defaults: averaged SGD, alpha=1e-3 (bench_head_defaults)
    assert (head.estimator.loss, head.estimator.alpha, head.estimator.average) == (
        "log_loss", 1e-3, True)
    args.memory_budget = "1MiB"
    assert cmd_train(args) == 0
    assert [name for name, _ in joblib.load(out).steps] == ["features", "scale", "head"]


def test_train_keras_mlp_and_learning_curve(store, env, tmp_path):
    pytest.importorskip("skbottleneck.heads._keras_mlp")
    out = tmp_path / "m.joblib"
    ok(["train", store, "--head", "keras-mlp", "-p", "hidden_layer_sizes=(32,)", "--epochs", "5",
        "--out", out], env)
    ok(["evaluate", out, store, "--report", tmp_path / "report"], env)
    assert (tmp_path / "report" / "learning_curve.png").stat().st_size > 1000


def test_weights_file_is_asked_for_again_at_train_time(photos, env, tmp_path):
    from skbottleneck.backbones import get_backbone

    weights = tmp_path / "vgg16_random.weights.h5"
    get_backbone("vgg16").build(weights=None, input_size=32, random_state=3).save_weights(weights)
    store = tmp_path / "f.h5"
    ok(["extract", photos, "--backbone", "vgg16", "--weights", weights, "--input-size", "32",
        "--out", store, "-q"], env)
    moved = tmp_path / "moved.weights.h5"
    weights.rename(moved)
    result = run(["train", store, "--out", tmp_path / "m.joblib"], env)
    assert_one_line_error(result, 2, "--weights PATH")
    ok(["train", store, "--weights", moved, "--out", tmp_path / "m.joblib"], env)
    assert joblib.load(tmp_path / "m.joblib").named_steps["features"].weights == str(moved)


def test_train_bad_head_parameter(store, env, tmp_path):
    result = run(["train", store, "--head", "mlp", "-p", "colour=blue", "--out", tmp_path / "m.joblib"], env)
    assert_one_line_error(result, 2, "no parameter 'colour'", "hidden_layer_sizes")
    result = run(["train", store, "-p", "alpha=-1", "--out", tmp_path / "m.joblib"], env)
    assert_one_line_error(result, 2, "alpha")


def test_evaluate_store_and_folder(model, store, photos, env, tmp_path):
    result = ok(["evaluate", model, store, "--report", tmp_path / "on_store"], env)
    assert result.stdout.startswith("accuracy: ")
    metrics = json.loads((tmp_path / "on_store" / "metrics.json").read_text())
    assert metrics["n_samples"] == 32
    assert set(metrics["per_class"]) == {"astronaut", "chelsea", "coffee", "rocket"}
    assert (tmp_path / "on_store" / "confusion_matrix.png").stat().st_size > 1000
    ok(["evaluate", model, photos, "--report", tmp_path / "on_folder", "-q"], env)
    again = json.loads((tmp_path / "on_folder" / "metrics.json").read_text())
    assert again["confusion_matrix"] == metrics["confusion_matrix"]


def test_evaluate_rejects_a_store_of_another_model(model, photos, env, tmp_path):
    other = tmp_path / "other.h5"
    ok(["extract", photos, "--backbone", "vgg16", "--weights", "none", "--random-state", "1",
        "--input-size", "32", "--out", other, "-q"], env)
    result = run(["evaluate", model, other, "--report", tmp_path / "r"], env)
    assert_one_line_error(result, 2, "different feature spaces")


def test_predict_csv_json_and_bad_images(model, photos, env, tmp_path):
    result = ok(["predict", model, photos / "coffee", photos / "rocket" / "rocket_000.jpg", "--proba"], env)
    lines = result.stdout.splitlines()
    header = lines[0].split(",")
    assert header == ["path", "prediction", "proba_astronaut", "proba_chelsea", "proba_coffee",
                      "proba_rocket", "error"]
    assert len(lines) == 1 + 8 + 1
    for line in lines[1:]:
        cells = line.split(",")
        assert cells[1] in {"astronaut", "chelsea", "coffee", "rocket"}
        assert sum(map(float, cells[2:6])) == pytest.approx(1.0, abs=1e-4)

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"GIF89a garbage")
    out = tmp_path / "predictions.json"
    result = run(["predict", model, photos / "astronaut" / "astronaut_000.jpg", bad,
                  "--format", "json", "--out", out], env)
    assert_one_line_error(result, 1, "1 of 2 images could not be read")
    rows = json.loads(out.read_text())
    assert rows[0]["prediction"] in {"astronaut", "chelsea", "coffee", "rocket"} and rows[0]["error"] is None
    assert rows[1]["path"] == str(bad) and rows[1]["prediction"] is None and rows[1]["error"]


# ------------------------------------------------------- safe model files
@pytest.fixture(scope="module")
def skops_model(workdir, store, env):
    """The ``model`` fixture's training, saved as skops."""
    out = workdir / "model.skops"
    result = ok(["train", store, "--head", "logreg", "--epochs", "20", "--out", out], env)
    assert "skops format: loading it runs no code" in result.stdout
    return out


def test_train_writes_skops_that_predicts_like_joblib(model, skops_model, photos, env):
    import skops.io

    assert zipfile.is_zipfile(skops_model)  # not a pickle under another name
    assert "skbottleneck.heads._incremental.IncrementalClassifier" in skops.io.get_untrusted_types(
        file=str(skops_model))
    images = [photos / "coffee", photos / "chelsea" / "chelsea_000.jpg"]
    from_skops = ok(["predict", skops_model, *images, "--proba"], env).stdout
    from_joblib = ok(["predict", model, *images, "--proba"], env).stdout
    assert from_skops == from_joblib and len(from_skops.splitlines()) == 1 + 9


PAYLOAD = """
import os
if os.environ.get("PAYLOAD_MARKER"):
    open(os.environ["PAYLOAD_MARKER"] + ".imported", "w").close()


class Payload:
    def __init__(self):
        self.armed = True

    def __setstate__(self, state):
        if os.environ.get("PAYLOAD_MARKER"):
            open(os.environ["PAYLOAD_MARKER"] + ".ran", "w").close()
        self.__dict__.update(state)

    def predict(self, X):
        return X
"""


def test_a_skops_file_with_an_untrusted_type_is_refused_and_runs_nothing(env, photos, tmp_path):
    (tmp_path / "payload.py").write_text(PAYLOAD)
    evil, marker = tmp_path / "evil.skops", tmp_path / "marker"
    env = dict(env, PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", (
        "import skops.io, payload; from sklearn.linear_model import SGDClassifier; "
        "from sklearn.pipeline import Pipeline; "
        f"skops.io.dump(Pipeline([('features', payload.Payload()), ('head', SGDClassifier())]), "
        f"{str(evil)!r})")], env=env, check=True, timeout=120)
    env["PAYLOAD_MARKER"] = str(marker)

    for command in (["predict", evil, photos / "coffee"], ["evaluate", evil, photos]):
        # a new process in tmp_path, where payload.py could be imported from
        result = run(command, env, cwd=tmp_path, process=True)
        assert_one_line_error(result, 2, str(evil), "payload.Payload", "not loaded")
    assert not any(tmp_path.glob("marker*"))  # payload.py was not even imported

    # the same file, loaded by someone who trusts it, does run the payload
    subprocess.run([sys.executable, "-c", (
        f"import skops.io; skops.io.load({str(evil)!r}, trusted=['payload.Payload'])")],
        env=env, check=True, timeout=120)
    assert sorted(p.name for p in tmp_path.glob("marker*")) == ["marker.imported", "marker.ran"]


def test_help_says_which_model_files_run_code(env):
    for command in ("train", "predict", "evaluate"):
        text = " ".join(ok([command, "--help"], env).stdout.split())
        assert ".skops" in text and "runs no code" in text
        assert "pickle: loading it runs whatever code it holds" in text
        assert "trust" in text


# ------------------------------------------------------- messages and names
def test_the_library_keyword_is_given_as_the_flag(photos, env, tmp_path):
    out = tmp_path / "f.h5"
    (tmp_path / "f.h5.partial").mkdir()
    (tmp_path / "f.h5.partial" / "manifest.json").write_text("{ not json")
    result = run(["extract", photos, *SMALL, "--out", out, "-q"], env)
    assert_one_line_error(result, 2, "manifest.json", "--overwrite")
    assert "overwrite=True" not in result.stderr
    ok(["extract", photos, *SMALL, "--out", out, "-q", "--overwrite"], env)
    assert not (tmp_path / "f.h5.partial").exists()


def test_file_names_keep_their_spaces(photos, env, tmp_path):
    good = tmp_path / " lead  space.jpg"  # a leading space and two spaces
    shutil.copy(photos / "coffee" / "coffee_000.jpg", good)
    bad = tmp_path / " two  spaces.jpg"
    bad.write_bytes(b"not a jpeg")
    shutil.copy(photos / "rocket" / "rocket_000.jpg", tmp_path / "rocket.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{good.name}\tcoffee\n{bad.name}\tcoffee\nrocket.jpg\trocket\n")
    out = tmp_path / "f.h5"

    result = run(["extract", "--file-list", listing, *SMALL, "--out", out, "-q"], env)
    assert_one_line_error(result, 1, f"{bad}: ")
    result = ok(["extract", "--file-list", listing, *SMALL, "--out", out, "-q",
                 "--on-error", "skip"], env)
    assert "1 unreadable images were left out" in result.stderr
    with FeatureStore(out) as fs:
        assert list(fs.paths) == [str(good), str(tmp_path / "rocket.jpg")]
    with open(f"{out}.errors.csv", newline="", encoding="utf-8") as f:
        assert [row[0] for row in csv.reader(f)] == ["path", str(bad)]


def test_no_decompression_bomb_warning_on_top_of_the_error(model, photos, env, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    for name in ("coffee", "rocket"):
        (folder / name).mkdir(parents=True)
        shutil.copy(photos / name / f"{name}_000.jpg", folder / name)
    side = int(Image.MAX_IMAGE_PIXELS ** 0.5) + 1  # just over Pillow's limit: Pillow warns
    Image.new("1", (side, side)).save(folder / "coffee" / "huge.png")  # 11 KB

    result = run(["extract", folder, *SMALL, "--out", tmp_path / "f.h5", "-q"], env)
    assert_one_line_error(result, 1, "huge.png", "possible decompression bomb")
    result = run(["evaluate", model, folder, "--on-error", "skip", "--report", tmp_path / "r", "-q"],
                 env)
    assert result.returncode == 0, result.stderr
    assert "huge.png" in result.stdout + result.stderr
    for output in (result.stderr,):
        assert "exceeds limit" not in output and "DecompressionBomb" not in output


def test_extract_no_wait_fails_at_once_on_a_store_being_written(photos, env, tmp_path):
    from skbottleneck import CNNFeatureTransformer

    if "wait" not in inspect.signature(CNNFeatureTransformer.extract).parameters:
        pytest.skip("CNNFeatureTransformer.extract has no wait= keyword yet")
    out = tmp_path / "f.h5"
    args = [sys.executable, "-m", "skbottleneck", "extract", str(photos), *SMALL, "--no-cache",
            "--batch-size", "1", "--decode-threads", "1", "--out", str(out), "-q"]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        journal = tmp_path / "f.h5.partial" / "done"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if journal.is_dir() and os.listdir(journal):
                first.send_signal(signal.SIGSTOP)  # holds the store's lock, writes nothing
                break
            time.sleep(0.01)
        if first.poll() is not None:
            pytest.skip("the first extraction finished before it could be paused")
        result = run(["extract", photos, *SMALL, "--no-cache", "--out", out, "-q", "--no-wait"],
                     env, timeout=120)
        assert_one_line_error(result, 1, str(out), str(first.pid), "--no-wait")
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    with FeatureStore(out) as fs:
        assert len(fs) == 32


# -------------------------------------------------------------------- cache
def test_cache_info_and_clear(store, env, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(env["SKBOTTLENECK_CACHE_DIR"], cache)
    info = json.loads(ok(["cache", "info", "--cache-dir", cache, "--format", "json"], env).stdout)
    backbones = {m["fingerprint"]["backbone"] for m in info["models"].values()}
    assert "vgg16" in backbones
    assert "vgg16" in ok(["cache", "info", "--cache-dir", cache], env).stdout
    result = ok(["cache", "clear", "--backbone", "vgg16", "--cache-dir", cache], env)
    assert result.stdout.startswith("removed the cached features of backbone vgg16")
    info = json.loads(ok(["cache", "info", "--cache-dir", cache, "--format", "json",
                          "--backbone", "vgg16"], env).stdout)
    assert info["models"] == {}


# ---------------------------------------------------- real ImageNet weights
@pytest.mark.slow
def test_efficientnet_lite0_imagenet_end_to_end(photos, env, tmp_path):
    """The offline ImageNet backbone, through the whole command line."""
    store = tmp_path / "lite0.h5"
    ok(["extract", photos, "--backbone", "efficientnet_lite0", "--input-size", "96",
        "--dtype", "float16", "--out", store, "-q"], env)
    model = tmp_path / "lite0.joblib"
    result = ok(["train", store, "--val-fraction", "0.25", "--epochs", "20", "--out", model], env)
    accuracy = float(result.stdout.split("validation accuracy:")[1].split()[0])
    assert accuracy >= 0.75  # ImageNet features separate these photos easily
    result = ok(["predict", model, photos / "chelsea"], env)
    predictions = [line.split(",")[1] for line in result.stdout.splitlines()[1:]]
    assert predictions.count("chelsea") >= 6
