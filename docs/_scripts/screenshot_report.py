"""Make the screenshot of ``report.html`` shown on the evaluation page of the docs.

Builds a small real task (photo patches of the seven scikit-image photos at
64 px, EfficientNet-Lite0 with its ImageNet weights, a logistic regression
trained on 2 images per class so that it makes mistakes worth looking at),
writes the evaluation report with :func:`skbottleneck.report.report`, and
renders ``report.html`` in headless Chromium (Debian's ``chromium``
package); then the contact sheet of a search (three test photos against a
store of the training photos' features). Run from the repository root::

    python docs/_scripts/screenshot_report.py [--out docs/user_guide/images/report_html.png]
        [--sheet-out docs/user_guide/images/contact_sheet.png] [--keep DIR]

The page is opened from a ``file://`` URL with networking disabled, as a
reader would open it offline.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "user_guide", "images", "report_html.png")
DEFAULT_SHEET_OUT = os.path.join(HERE, "..", "user_guide", "images", "contact_sheet.png")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium():
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render(html_path, png_path, *, width=1280, height=2000, timeout=120):
    """Screenshot ``html_path`` (a local file) into ``png_path`` with headless Chromium."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--screenshot={os.path.abspath(png_path)}", f"--window-size={width},{height}",
               "file://" + os.path.abspath(html_path)]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return png_path


def make_report(out_dir):
    """Write the report and a contact sheet of a small real model into ``out_dir``.

    Returns the report's metrics and the contact sheet's path.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skbottleneck import CNNFeatureTransformer, find_similar
    from skbottleneck.datasets import PHOTO_NAMES, load_image_folder, make_photo_folder
    from skbottleneck.report import contact_sheet, report

    photos = make_photo_folder(os.path.join(out_dir, "photos"), classes=list(PHOTO_NAMES),
                               n_per_class=12, size=(96, 96), random_state=0)
    paths, labels = load_image_folder(photos)
    paths, labels = np.asarray(paths, dtype=object), np.asarray(labels)
    train = np.zeros(len(paths), dtype=bool)
    for name in PHOTO_NAMES:
        train[np.flatnonzero(labels == name)[:2]] = True
    model = make_pipeline(
        CNNFeatureTransformer("efficientnet_lite0", input_size=64),
        StandardScaler(), LogisticRegression(C=0.002, max_iter=2000))
    model.fit(paths[train], labels[train])
    metrics = report(model, paths[~train], labels[~train], os.path.join(out_dir, "report"),
                     title="EfficientNet-Lite0 (64 px) + logistic regression, 2 photos per class",
                     max_thumbnails=6)
    cnn = model[0]
    store = cnn.extract(paths[train], labels[train],
                        store=os.path.join(out_dir, "train.h5")).features
    queries = [paths[~train][i] for i in (0, 20, 45)]
    result = find_similar(store, queries, k=5, transformer=cnn)
    sheet = contact_sheet(result, os.path.join(out_dir, "sheet.html"),
                          title="Nearest training photos of three test photos")
    return metrics, sheet


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--sheet-out", default=DEFAULT_SHEET_OUT)
    parser.add_argument("--keep", help="write the report here (default: a temporary folder)")
    args = parser.parse_args(argv)
    work = args.keep or tempfile.mkdtemp(prefix="skb-report-")
    metrics, sheet = make_report(work)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    render(metrics["files"]["html"], args.out)
    render(sheet, args.sheet_out, height=860)
    print(f"accuracy {metrics['accuracy']:.3f} on {metrics['n_samples']} images; "
          f"report in {os.path.join(work, 'report')}; screenshots {args.out}, {args.sheet_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
