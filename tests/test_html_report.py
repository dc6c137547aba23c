"""report.html and the similarity contact sheet, on real photos and a real CNN.

EfficientNet-Lite0 (its ImageNet weights ship with the package) at 64 px
tells the photo classes apart, so the mistakes a test plants (true labels
swapped for some test images) are ones the model makes with confidence.
"""

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import LinearSVC

from skbottleneck import CNNFeatureTransformer, find_similar
from skbottleneck.report import contact_sheet, report

HOSTILE = '<script>alert("x")</script>&amp;'


class _Page(HTMLParser):
    """Collects the tags of a page; fails on a tag closed out of order."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.imgs, self.tags, self.stack, self.text, self.titles = [], [], [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.titles += [value for name, value in attrs if name == "title"]
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag not in ("meta", "br", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    page = _Page(open(path, encoding="utf-8").read())
    assert page.stack == []  # every element closed
    assert "script" not in page.tags and "link" not in page.tags  # no JavaScript, nothing fetched
    for img in page.imgs:  # every picture is embedded: a valid image in a data: URI
        src = img["src"]
        assert src.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")), src[:80]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()
    return page


def _section_samples(text, anchor):
    """The ``sample N`` captions of the section whose heading has id ``anchor``, in order."""
    start = text.index(f'id="{anchor}"')
    end = min([i for i in (text.find("<h2", start), text.find("<h3", start + 1)) if i > 0])
    return [int(n) for n in re.findall(r"sample (\d+)", text[start:end])]


@pytest.fixture(scope="module")
def setup(photo_folder, tmp_path_factory):
    """A store of EfficientNet-Lite0 features of copies of the photos, and a head trained on half."""
    from skbottleneck.datasets import load_image_folder

    root = tmp_path_factory.mktemp("html")
    photos = shutil.copytree(photo_folder, root / "photos")
    paths, labels = load_image_folder(photos)
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=64)
    store = cnn.extract(paths, labels, store=root / "features.h5").features
    X = cnn.transform(store)
    train = np.arange(len(paths)) % 2 == 0
    model = make_pipeline(cnn, StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    model[1:].fit(X[train], np.asarray(labels)[train])  # the head, on the stored features
    return dict(root=root, paths=np.asarray(paths), labels=np.asarray(labels), store=store, X=X,
                model=model, train=train)


def test_report_html_shows_the_most_confident_mistakes_in_order(setup, tmp_path):
    labels, X, model = setup["labels"], setup["X"], setup["model"]
    test = np.flatnonzero(~setup["train"])
    assert (model[1:].predict(X) == labels).all()  # the head knows these photos
    # plant mistakes: the first 3 test images of each of two classes are labelled as another
    y = labels.copy()
    classes = sorted(set(labels))
    planted = []
    for name, wrong in [(classes[0], classes[1]), (classes[2], classes[3])]:
        rows = [i for i in test if labels[i] == name][:3]
        y[rows] = wrong
        planted += rows
    store = setup["store"]
    metrics = report(model, store, y, tmp_path, max_thumbnails=2, title=HOSTILE)
    assert metrics["scores"] == "probability"
    page = _parse(tmp_path / "report.html")
    text = (tmp_path / "report.html").read_text()

    # what a mistake is ranked by: the probability of the predicted class
    proba = model[1:].predict_proba(X)
    p_pred = proba[np.arange(len(X)), [list(model.classes_).index(c) for c in labels]]
    # the whole store was reported (train rows are right), so sample N is store row N
    for name in (classes[1], classes[3]):  # the classes the planted images were said to be
        j = classes.index(name)
        wrong = [i for i in planted if y[i] == name]
        expected = sorted(wrong, key=lambda i: (-p_pred[i], i))[:2]
        assert _section_samples(text, f"class-{j}") == expected
        k = classes.index(labels[wrong[0]])
        assert _section_samples(text, f"pair-{j}-{k}") == expected
        assert f"and {len(wrong) - 2} more" in text
    # the probabilities shown are the model's
    i = _section_samples(text, "class-1")[0]
    assert f"p {p_pred[i]:.3f}" in text
    # each thumbnail is the image itself, decoded by the package's decoder
    first = page.imgs[0]
    assert first["alt"] == str(setup["paths"][_section_samples(text, "class-1")[0]])
    assert len(page.imgs) == 2 * 4  # 2 class sections + 2 pair sections, 2 pictures each
    assert HOSTILE not in text and "&lt;script&gt;" in text  # the title is escaped
    assert f"{len(planted)} mistakes" in text


def test_unreadable_images_and_hostile_names_are_escaped_placeholders(setup, tmp_path):
    root = tmp_path / "photos"
    hostile_dir = root / 'a"><img src=x onerror=alert(1)>'
    hostile_dir.mkdir(parents=True)
    good = hostile_dir / "<b>bold & 'x'.png"
    gone = root / "gone.jpg"
    src = setup["paths"][1]
    shutil.copy(src, good)
    shutil.copy(src, gone)
    # a model of the user's own that tells the two files by name, and labels that are markup
    by_name = FunctionTransformer(
        lambda paths: np.array([[1.0, 0.0] if "bold" in p else [0.0, 1.0] for p in paths]))
    X = [str(good), str(gone)]
    model = make_pipeline(by_name, LogisticRegression()).fit(X * 2, [HOSTILE, "b"] * 2)
    gone.unlink()  # an image moved away since: no thumbnail, a placeholder with the reason
    y = ["b", HOSTILE]  # both wrong
    metrics = report(model, X, y, tmp_path / "r")
    assert metrics["n_samples"] == 2
    path = tmp_path / "r" / "report.html"
    page = _parse(path)
    text = path.read_text()
    assert HOSTILE not in text and "<b>bold" not in text and "onerror=alert(1)>" not in text
    assert all(img["src"].startswith("data:") for img in page.imgs)
    assert 'image unreadable: no such file' in text
    # the text a reader sees is the labels and paths themselves
    seen = "".join(page.text)
    assert HOSTILE in seen and os.path.relpath(good, root) in seen and "gone.jpg" in seen
    assert str(good) in page.titles and str(gone) in page.titles  # full paths as tooltips
    assert f"relative to {root}" in seen


def test_report_html_stays_bounded_for_a_large_test_set(tmp_path):
    rng = np.random.RandomState(0)
    folder = tmp_path / "many"
    folder.mkdir()
    colours = rng.randint(0, 256, (40, 3))
    paths = []
    for i in range(40):
        p = folder / f"{i}.png"
        Image.new("RGB", (12, 12), tuple(int(c) for c in colours[i])).save(p)
        paths.append(str(p))
    X = np.asarray([paths[i % 40] for i in range(2000)], dtype=object)
    y = np.asarray([f"class {i}" for i in rng.randint(0, 10, 2000)])  # labels the model cannot learn
    features = FunctionTransformer(
        lambda p: colours[[int(os.path.basename(s).split(".")[0]) for s in p]] / 255.0)
    model = make_pipeline(features, LogisticRegression()).fit(X, y)
    metrics = report(model, X, y, tmp_path / "r", max_thumbnails=5, plots=False)
    n_wrong = sum(1 for t, p in zip(y, model.predict(X)) if t != p)
    assert n_wrong > 1000
    path = tmp_path / "r" / "report.html"
    page = _parse(path)
    text = path.read_text()
    n_sections = text.count("<h3 ")
    n_pairs = sum(1 for i in range(10) for j in range(10)
                  if i != j and metrics["confusion_matrix"][i][j])
    assert n_sections == 10 + min(n_pairs, 50)
    assert 0 < len(page.imgs) <= 5 * n_sections
    for anchor in re.findall(r'<h3 id="([^"]+)"', text):
        assert len(_section_samples(text, anchor)) <= 5
    assert path.stat().st_size < 2_000_000


def test_contact_sheet_shows_each_query_beside_its_neighbours(setup, tmp_path):
    paths, labels, store = setup["paths"], setup["labels"], setup["store"]
    missing = tmp_path / "missing.jpg"
    cnn = setup["model"][0].set_params(on_error="skip")
    try:
        with pytest.warns(UserWarning, match="could not be read"):
            result = find_similar(store, [paths[0], paths[9], missing], k=3, transformer=cnn)
    finally:
        cnn.set_params(on_error="raise")
    out = contact_sheet(result, tmp_path / "sheet.html", title=HOSTILE)
    page = _parse(out)
    text = open(out).read()
    assert len(page.imgs) == 2 * (1 + 3)  # each readable query and its 3 neighbours
    assert page.imgs[0]["alt"] == str(paths[0])
    assert page.imgs[1]["alt"] == str(paths[0])  # the query itself is its nearest neighbour
    for q in range(2):
        for r in range(3):
            assert f"distance {result.distances[q, r]:.3f}" in text
            assert f"label: {labels[result.indices[q, r]]}" in text
    assert "query unreadable: no such file" in text and HOSTILE not in text


def test_cli_similar_html_and_evaluate_thumbnails(setup, tmp_path, capsys):
    """The commands, run in this process (TensorFlow is already loaded)."""
    from skbottleneck._model_files import save_model
    from skbottleneck.cli import main

    store_path = setup["store"].path
    sheet = tmp_path / "sheet.html"
    assert main(["similar", store_path, str(setup["paths"][3]), "-k", "2", "--format", "json",
                 "--html", str(sheet)]) == 0
    out = capsys.readouterr()
    assert out.out.lstrip().startswith("[") and "contact sheet written" in out.err
    assert len(_parse(sheet).imgs) == 3
    assert main(["similar", store_path, str(setup["paths"][3]), "--html",
                 str(tmp_path / "no" / "sheet.html")]) != 0  # refused before the search
    assert "does not exist" in capsys.readouterr().err

    model_path = tmp_path / "model.skops"
    save_model(setup["model"], model_path)
    assert main(["evaluate", str(model_path), store_path, "--report", str(tmp_path / "r"),
                 "--thumbnails", "1", "-q"]) == 0
    assert "report.html" in capsys.readouterr().out
    _parse(tmp_path / "r" / "report.html")


def test_report_renders_in_chromium(setup, tmp_path):
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("chromium is not installed")
    labels = setup["labels"].copy()
    labels[0], labels[-1] = labels[-1], labels[0]
    report(setup["model"], setup["store"], labels, tmp_path, plots=False)
    png = tmp_path / "shot.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
                    "--window-size=1000,1400", (tmp_path / "report.html").as_uri()],
                   check=True, timeout=120, capture_output=True)
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (1400, 1000)
    assert pixels.std() > 10  # something was drawn
    # the thumbnails' colours are on the page: photos are not gray
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).mean() > 0.001


class _NearestMean(ClassifierMixin, BaseEstimator):
    """A classifier with neither predict_proba nor decision_function (a user's own)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.array([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        return self.classes_[((X[:, None, :] - self.means_) ** 2).sum(axis=2).argmin(axis=1)]


@pytest.mark.parametrize("head, kind", [(LinearSVC(), "decision_function values"),
                                        (_NearestMean(), "neither probabilities")])
def test_page_says_what_the_scores_are_and_lists_feature_rows(head, kind, tmp_path):
    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(0, 1, (30, 4)), rng.normal(2, 1, (30, 4)), rng.normal(4, 1, (30, 4))]
    y = np.repeat(["a", "b", "c"], 30)
    model = head.fit(X, y)
    report(model, X, y, tmp_path, plots=False, max_thumbnails=3)
    page = _parse(tmp_path / "report.html")
    text = " ".join(" ".join(page.text).split())
    assert kind in text
    assert page.imgs == [] and "no image: the samples were given as features" in text
    wrong = np.flatnonzero(model.predict(X) != y)
    assert len(wrong) > 3
    if isinstance(head, LinearSVC):
        scores = model.decision_function(X)
        column = {c: j for j, c in enumerate(model.classes_)}
        predicted = model.predict(X)
        top = max(wrong, key=lambda i: scores[i, column[predicted[i]]])
        assert f"sample {top}" in text and "score " in text
    else:  # input order
        first = [i for i in wrong if y[i] == "a"][:3]
        assert _section_samples(open(tmp_path / "report.html").read(), "class-0") == first
