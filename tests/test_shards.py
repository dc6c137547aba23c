"""Tar shards in the WebDataset layout, local and on a real S3 server (moto):
listed, labelled and extracted member by member, nothing unpacked to disk."""

import io
import os
import tarfile

import numpy as np
import pytest

from _servers import s3_filesystem, s3_server
from skbottleneck import CNNFeatureTransformer, ImageError
from skbottleneck.datasets import load_image_folder, load_tar_shards, make_photo_folder
from skbottleneck.remote import list_shard


def _write_shard(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of real JPEGs labelled by .cls, .txt and .json members, and the files."""
    tmp = tmp_path_factory.mktemp("shards")
    folder = make_photo_folder(tmp / "photos", n_per_class=2, size=(40, 40), random_state=3)
    files, labels = load_image_folder(folder)
    label_members = [("cls", lambda v: v.encode()), ("txt", lambda v: f"{v}\n".encode()),
                     ("json", lambda v: f'{{"label": "{v}", "w": 40}}'.encode())]
    out = []
    for s, half in enumerate((slice(0, 4), slice(4, 8))):
        members = []
        for i, (f, lab) in enumerate(zip(files[half], labels[half])):
            key = f"{s:03d}{i:03d}"
            ext, encode = label_members[i % 3]
            members += [(f"{key}.jpg", open(f, "rb").read()), (f"{key}.{ext}", encode(lab))]
        out.append(_write_shard(tmp / f"shard-{s:03d}.tar", members))
    return out, files, labels


def _cnn(**kw):
    return CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0, input_size=32,
                                 batch_size=16, runtime="tensorflow", **kw)


def test_shards_are_listed_with_their_labels(shards):
    paths, files, labels = shards
    got, got_labels = load_tar_shards([str(p) for p in paths])
    assert got_labels.tolist() == labels.tolist()
    assert got[0] == f"{paths[0]}::000000.jpg" and got[-1] == f"{paths[1]}::001003.jpg"
    assert list_shard(str(paths[0]))["000000.jpg"] == os.path.getsize(files[0])


def test_features_of_members_local_and_on_s3_equal_the_files(shards, tmp_path):
    paths, files, _ = shards
    expected = _cnn(cache_dir=None).fit().transform(files)
    members, _ = load_tar_shards([str(p) for p in paths])
    cnn = _cnn(cache_dir=tmp_path).fit()
    np.testing.assert_array_equal(cnn.transform(members), expected)
    with s3_server() as endpoint:
        fs = s3_filesystem(endpoint)
        fs.mkdir("shards")
        for p in paths:
            fs.put(str(p), f"shards/{p.name}")
        options = {"client_kwargs": {"endpoint_url": endpoint}}
        remote, labels = load_tar_shards([f"s3://shards/{p.name}" for p in paths],
                                         storage_options=options)
        assert remote[0] == "s3://shards/shard-000.tar::000000.jpg" and len(labels) == 8
        res = _cnn(cache_dir=tmp_path, storage_options=options).fit().extract(remote)
        assert res.stats["n_cached"] == len(files)  # same bytes, same content keys
        np.testing.assert_array_equal(res.features, expected)
        fresh = _cnn(cache_dir=None, storage_options=options).fit().transform(remote)
        np.testing.assert_array_equal(fresh, expected)


def test_non_image_members_are_named_and_skipped(shards, tmp_path):
    _, files, _ = shards
    jpeg = open(files[0], "rb").read()
    shard = str(_write_shard(tmp_path / "mixed.tar", [
        ("a.jpg", jpeg), ("a.cls", b"0"),
        ("b.bin", b"\x00" * 10), ("b.cls", b"1"),  # a sample with no image
        ("c.jpg", b"not a jpeg at all"), ("c.cls", b"2"),  # an image member that is none
        ("d.jpg", jpeg), ("d.cls", b"3"),
    ]))
    with pytest.raises(ImageError, match="not an image member") as info:
        load_tar_shards(shard)
    assert info.value.path == f"{shard}::b.bin"
    with pytest.warns(UserWarning, match="b.bin"):
        paths, labels = load_tar_shards(shard, on_error="skip")
    assert labels.tolist() == ["0", "2", "3"]
    with pytest.raises(ImageError, match="not an image file") as info:
        _cnn(cache_dir=None).fit().transform(paths)
    assert info.value.path == f"{shard}::c.jpg"
    with pytest.warns(UserWarning):
        res = _cnn(cache_dir=None, on_error="skip").fit().extract(paths)
    assert res.kept.tolist() == [0, 2] and res.failed[0][0] == f"{shard}::c.jpg"


def test_a_compressed_or_missing_shard_is_named(tmp_path):
    import gzip

    plain = _write_shard(tmp_path / "p.tar", [("a.jpg", b"x")])
    packed = tmp_path / "packed.tar"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(ImageError, match="not an uncompressed tar") as info:
        load_tar_shards(packed)
    assert info.value.path == str(packed)
    with pytest.raises(ImageError, match="no such shard"):
        load_tar_shards(tmp_path / "missing.tar")


def test_the_command_line_takes_a_pattern_of_shards(shards):
    from skbottleneck.cli._files import load_input
    from skbottleneck.cli._output import CLIError

    paths, _, labels = shards
    got, got_labels = load_input(str(paths[0].parent / "shard-*.tar"))
    assert len(got) == 8 and got_labels.tolist() == labels.tolist()
    with pytest.raises(CLIError, match="--path-column and --label-column name the columns"):
        load_input(str(paths[0]), label_column="kind")
    with pytest.raises(CLIError, match="no such shard"):
        load_input(str(paths[0].parent / "nothing-*.tar"))
