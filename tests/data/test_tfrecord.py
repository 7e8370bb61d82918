"""TFRecord + TFace index: framing and tf.train.Example bytes built by hand from the format description, checked
against Google's protobuf runtime, CRC32C against RFC 3720 vectors, reader errors, RecordIO <-> TFRecord round trip,
relabelling that touches only the index, and the `facezoo data` commands."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from facezoo.data.datasets import open_dataset
from facezoo.data.pack import convert, pack, write_tfrecord
from facezoo.data.recordio import RecordDataset
from facezoo.data.tfexample import decode_example, encode_example
from facezoo.data.tfrecord import (
    TFRecordDataset,
    crc32c,
    masked_crc,
    read_index,
    relabel,
    scan_offsets,
)
from facezoo.errors import DataError

from .test_pack_cli import (
    make_folder,
    png,
    run,  # noqa: F401 (the `facezoo data` fixture)
)


def crc32c_bitwise(data: bytes) -> int:
    """CRC-32C straight from its definition: reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_by_hand(data: bytes) -> int:
    c = crc32c_bitwise(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def example_by_hand(image: bytes) -> bytes:
    """tf.train.Example {features {feature {key: "image" value {bytes_list {value: image}}}}} in wire format:
    tag 0x0A = field 1, wire type 2 (length-delimited) at every level; the map entry's value is field 2 (0x12)."""
    bytes_list = b"\x0a" + varint(len(image)) + image  # BytesList.value
    feature = b"\x0a" + varint(len(bytes_list)) + bytes_list  # Feature.bytes_list
    entry = b"\x0a\x05image" + b"\x12" + varint(len(feature)) + feature  # map entry: key, value
    features = b"\x0a" + varint(len(entry)) + entry  # Features.feature
    return b"\x0a" + varint(len(features)) + features  # Example.features


def record_by_hand(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_by_hand(length)) + payload + struct.pack("<I", masked_by_hand(payload))


# ----------------------------------------------------------------------------------------------- CRC and framing


def test_crc32c_rfc3720_vectors_and_bitwise_definition():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert crc32c(data) == crc32c_bitwise(data)
    assert masked_crc(data) == masked_by_hand(data)


def test_shards_and_index_are_byte_exact(tmp_path):
    images = [png((i * 50, 0, 0)) for i in range(5)]
    groups = [(0, images[:2]), (3, images[2:])]
    r = write_tfrecord(tmp_path / "out", groups, lambda b: b, None, name="TFR-x", shard_size=2)
    assert r["shards"] == 3 and r["images"] == 5 and r["identities"] == 4
    labels = [0, 0, 3, 3, 3]
    expect_index = ""
    for shard in range(3):
        chunk = images[2 * shard : 2 * shard + 2]
        records = [record_by_hand(example_by_hand(im)) for im in chunk]
        path = tmp_path / "out" / "TFR-x" / f"TFR-x-{shard:05d}.tfrecord"
        assert path.read_bytes() == b"".join(records)
        offset = 0
        for j, rec in enumerate(records):
            expect_index += f"TFR-x\t{shard}\t{offset}\t{labels[2 * shard + j]}\n"
            offset += len(rec)
    assert (tmp_path / "out" / "TFR-x.txt").read_text() == expect_index
    assert scan_offsets(tmp_path / "out" / "TFR-x" / "TFR-x-00000.tfrecord") == [
        0,
        len(record_by_hand(example_by_hand(images[0]))),
    ]


def _example_class():
    """tf.train.Example built with Google's protobuf runtime from a hand-written descriptor (no TensorFlow)."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="example_test.proto", package="tft", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL

    def msg(name, *fields, options=None):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name, oneof in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
        return m

    msg("BytesList", ("value", 1, T.TYPE_BYTES, rep, None, None))
    msg("FloatList", ("value", 1, T.TYPE_FLOAT, rep, None, None))
    msg("Int64List", ("value", 1, T.TYPE_INT64, rep, None, None))
    feat = msg(
        "Feature",
        ("bytes_list", 1, T.TYPE_MESSAGE, opt, ".tft.BytesList", 0),
        ("float_list", 2, T.TYPE_MESSAGE, opt, ".tft.FloatList", 0),
        ("int64_list", 3, T.TYPE_MESSAGE, opt, ".tft.Int64List", 0),
    )
    feat.oneof_decl.add(name="kind")
    feats = msg("Features", ("feature", 1, T.TYPE_MESSAGE, rep, ".tft.Features.FeatureEntry", None))
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=opt, type_name=".tft.Feature")
    entry.options.map_entry = True
    msg("Example", ("features", 1, T.TYPE_MESSAGE, opt, ".tft.Features", None))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tft.Example"))


def test_example_agrees_with_googles_protobuf_both_ways():
    Example = _example_class()
    image = bytes(range(256)) * 3
    ours = encode_example({"image": image})
    assert ours == example_by_hand(image)
    parsed = Example()
    parsed.ParseFromString(ours)
    assert parsed.features.feature["image"].bytes_list.value[0] == image
    theirs = Example()
    theirs.features.feature["image"].bytes_list.value.append(image)
    theirs.features.feature["label"].int64_list.value.extend([7, -2, 1 << 40])
    theirs.features.feature["score"].float_list.value.extend([0.5, -1.25])
    got = decode_example(theirs.SerializeToString())
    assert got == {"image": [image], "label": [7, -2, 1 << 40], "score": [0.5, -1.25]}


# ----------------------------------------------------------------------------------------------- the dataset


@pytest.fixture
def tfr(tmp_path):
    files = make_folder(tmp_path / "faces", {"amy": 2, "bob": 1, "cy": 3})
    r = pack(tmp_path / "faces", tmp_path / "tfr", format="tfrecord", shard_size=4)
    return tmp_path / "tfr", files, r


def test_reader_labels_images_and_layout_detection(tfr):
    out, files, r = tfr
    assert r["name"] == "TFR-tfr" and r["shards"] == 2
    expected = [(c, data) for c, name in enumerate(files) for data in files[name]]
    for path in (out, out / "TFR-tfr.txt"):
        ds = open_dataset(path)
        assert isinstance(ds, TFRecordDataset) and ds.num_classes == 3 and len(ds) == 6
        assert [(int(ds.labels[i]), ds.read_encoded(i)) for i in range(6)] == expected
        image, label = ds[5]
        assert label == 2 and image.shape == (4, 5, 3) and (image[0, 0] == [80, 20, 7]).all()
    assert (out / "TFR-tfr.identities.txt").read_text() == "0\tamy\n1\tbob\n2\tcy\n"
    assert ds.classes == ["amy", "bob", "cy"]


def _flip(path, pos):
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupt_payload_and_hostile_length_name_shard_and_offset(tfr):
    out, _, _ = tfr
    shard = out / "TFR-tfr" / "TFR-tfr-00000.tfrecord"
    second = scan_offsets(shard)[1]
    _flip(shard, second + 20)
    ds = TFRecordDataset(out)
    assert ds.read_encoded(0)  # the first record is intact
    with pytest.raises(DataError, match=rf"TFR-tfr-00000.tfrecord: offset {second}: payload CRC mismatch"):
        ds.read_encoded(1)
    # A length of 2^62 with a valid CRC: refused before any read of that size.
    data = bytearray(shard.read_bytes())
    length = struct.pack("<Q", 1 << 62)
    data[second : second + 12] = length + struct.pack("<I", masked_by_hand(length))
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"offset {second}: record of {1 << 62} bytes runs past the end"):
        TFRecordDataset(out).read_encoded(1)
    _flip(shard, second + 2)  # now the length's own CRC fails
    with pytest.raises(DataError, match=rf"offset {second}: length CRC mismatch"):
        TFRecordDataset(out).read_encoded(1)


def test_bad_index_files(tfr):
    out, _, _ = tfr
    index = out / "TFR-tfr.txt"
    good = index.read_text()
    index.write_text(good + "TFR-tfr\t0\tx\t1\n")
    with pytest.raises(DataError, match=r"TFR-tfr.txt:7: expected 'tfrecord_name<TAB>shard_idx"):
        TFRecordDataset(index)
    index.write_text(good + "TFR-tfr\t0\t999999\t1\n")
    with pytest.raises(DataError, match=r"record 7 points at offset 999999 .* past its end"):
        TFRecordDataset(index)
    index.write_text(good + "TFR-tfr\t9\t0\t1\n")
    with pytest.raises(DataError, match=r"shard 9 of 'TFR-tfr' should be .*TFR-tfr-00009.tfrecord"):
        TFRecordDataset(index)


def test_skip_corrupt_and_pickling_for_workers(tfr):
    import pickle

    out, _, _ = tfr
    _flip(out / "TFR-tfr" / "TFR-tfr-00001.tfrecord", 30)
    ds = TFRecordDataset(out, skip_corrupt=True)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles == {} and clone[0][1] == 0
    with pytest.warns(UserWarning, match="skipping corrupt sample"):
        assert ds[4] is None


# --------------------------------------------------------------------------------- conversions and relabelling


def test_recordio_tfrecord_round_trip(tmp_path):
    files = make_folder(tmp_path / "faces", {"a": 3, "b": 1, "c": 2})
    pack(tmp_path / "faces", tmp_path / "rec")
    convert(tmp_path / "rec", tmp_path / "tfr", "tfrecord", shard_size=2)
    convert(tmp_path / "tfr", tmp_path / "rec2", "recordio")
    expected = [(c, data) for c, name in enumerate(files) for data in files[name]]
    for ds in (RecordDataset(tmp_path / "rec"), TFRecordDataset(tmp_path / "tfr"), RecordDataset(tmp_path / "rec2")):
        assert [(int(ds.labels[i]), ds.read_encoded(i)) for i in range(len(ds))] == expected
    assert (tmp_path / "rec2" / "train.rec").read_bytes() == (tmp_path / "rec" / "train.rec").read_bytes()
    assert (tmp_path / "rec2" / "property").read_text() == "3,4,5\n"
    assert (tmp_path / "rec2" / "identities.txt").read_text() == "0\ta\n1\tb\n2\tc\n"


def test_relabel_touches_only_the_index(tfr, tmp_path):
    out, files, _ = tfr
    shards = sorted((out / "TFR-tfr").iterdir())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards}
    original = read_index(out / "TFR-tfr.txt")
    (tmp_path / "keep.txt").write_text("2\n0  # amy\n")
    r = relabel(out / "TFR-tfr.txt", keep=tmp_path / "keep.txt")
    assert r == {"index": str(out / "TFR-tfr.txt"), "records": 5, "dropped": 1, "identities": 2}
    ds = TFRecordDataset(out)
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]  # amy -> 0, cy -> 1, bob dropped
    assert [ds.read_encoded(i) for i in range(5)] == files["amy"] + files["cy"]
    assert (out / "TFR-tfr.identities.txt").read_text() == "0\tamy\n1\tcy\n"  # names follow the labels
    (tmp_path / "map.txt").write_text("0 1\n1 0\n")
    relabel(out, tmp_path / "swapped.txt", mapping=tmp_path / "map.txt")
    assert read_index(tmp_path / "swapped.txt").label.tolist() == [1, 1, 0, 0, 0]
    assert (tmp_path / "swapped.identities.txt").read_text() == "0\tcy\n1\tamy\n"
    kept = read_index(out / "TFR-tfr.txt")
    assert kept.offset.tolist() == original.offset[[0, 1, 3, 4, 5]].tolist()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards} == before
    with pytest.raises(DataError, match="exactly one of"):
        relabel(out, mapping={0: 1}, keep=[0])
    with pytest.raises(DataError, match="nothing would remain"):
        relabel(out, keep=[9])


# -------------------------------------------------------------------------------------------------------- CLI


def test_cli_pack_inspect_unpack_relabel_convert(tmp_path, run):  # noqa: F811
    files = make_folder(tmp_path / "faces", {"a": 2, "b": 3})
    rc, out, _ = run("pack", tmp_path / "faces", tmp_path / "t", "--format", "tfrecord", "--shard-size", "2")
    assert rc == 0 and "packed 5 images of 2 identities" in out and "TFR-t.txt + 3 shard(s)" in out
    rc, out, _ = run("inspect", tmp_path / "t", "--json")
    report = json.loads(out)
    assert rc == 0 and report["format"] == "tfrecord" and report["images"] == 5 and report["shards"] == 3
    assert report["corrupt"] == [] and report["image_sizes"] == {"4x5": 5}
    rc, out, _ = run("unpack", tmp_path / "t", tmp_path / "back")
    assert rc == 0 and (tmp_path / "back" / "1" / "4.png").read_bytes() == files["b"][2]
    (tmp_path / "keep.txt").write_text("1\n")
    rc, out, _ = run("relabel", tmp_path / "t" / "TFR-t.txt", "--keep", tmp_path / "keep.txt")
    assert rc == 0 and "3 records of 1 identities kept, 2 dropped" in out
    rc, out, _ = run("convert", tmp_path / "t", tmp_path / "f", "--format", "folder")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "f").iterdir()) == ["b"]  # the kept identity, by name
    assert sorted(p.name for p in (tmp_path / "f" / "b").iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_cli_errors(tmp_path, run):  # noqa: F811
    make_folder(tmp_path / "faces", {"a": 1})
    rc, _, err = run("pack", tmp_path / "faces", tmp_path / "r", "--shard-size", "3")
    assert rc == 2 and "output format 'recordio' has no argument 'shard_size'" in err
    rc, _, err = run("convert", tmp_path / "faces", tmp_path / "x", "--format", "tfrecords")
    assert rc == 2 and "Did you mean 'tfrecord'?" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.me").write_text("x")
    rc, _, err = run("pack", tmp_path / "faces", tmp_path / "busy", "--format", "tfrecord")
    assert rc == 2 and "already exists and is not an empty folder" in err
