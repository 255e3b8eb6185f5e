import gzip
import http.server
import multiprocessing
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import idx_bytes, sha256, spec_for, write_dataset
from mnistlab import data, datasets, fetch, resident
from mnistlab.errors import ConfigError, DataError
from mnistlab.fetch import Limits
from mnistlab.idx import parse_idx

# --- the IDX parser ---------------------------------------------------------------------------


def test_parse_idx_round_trip():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "bad magic"),
        (b"garbage that is not IDX at all", "bad magic"),
        (bytes([0, 0, 0x42, 1]) + b"\0\0\0\1x", "unknown IDX element type 0x42"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated IDX header"),
        (idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100], "expected 3152"),
        (idx_bytes(np.zeros((4,), np.uint8)) + b"extra", "expected 12"),
    ],
)
def test_parse_idx_rejects_malformed_files_with_their_name(content, message):
    with pytest.raises(DataError, match=message) as error:
        parse_idx(content, "some-file.idx")
    assert "some-file.idx" in str(error.value)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "wrong-magic", "bad-gzip"])
def test_corrupt_file_is_a_clear_error_and_nothing_is_cached(tmp_path, kind):
    raw = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    content = {
        "truncated": gzip.compress(raw[:-7]),
        "garbage": gzip.compress(b"\x13\x37" * 500),
        "wrong-magic": gzip.compress(b"\x08\x03" + raw[2:]),
        "bad-gzip": gzip.compress(raw)[:-30],
    }[kind]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.read_idx(path, sha256(content))
    assert not list((tmp_path / "mnistlab").rglob("*.npy"))


def test_decoded_cache_is_written_once_and_then_used(tmp_path, tiny, monkeypatch):
    folder, _ = tiny
    first = data.load("tiny", folder)
    cached = list((tmp_path / "mnistlab" / "decoded").glob("*.npy"))
    assert len(cached) == 4
    # The second load decodes nothing: every array comes from the cache.
    monkeypatch.setattr(gzip, "decompress", lambda *_: pytest.fail("decoded again"))
    second = data.load("tiny", folder)
    assert torch.equal(second.train.images, first.train.images)


@pytest.mark.parametrize(
    "damage", ["zeros", "labels out of range", "garbage", "truncated", "a huge shape"]
)
def test_an_altered_cache_entry_is_rebuilt_from_the_verified_file(tmp_path, tiny, caplog, damage):
    folder, contents = tiny
    first = data.load("tiny", folder)
    decoded = tmp_path / "mnistlab" / "decoded"
    images = decoded / f"{sha256(contents['train-images-idx3-ubyte'])}.npy"
    labels = decoded / f"{sha256(contents['train-labels-idx1-ubyte'])}.npy"
    target = labels if damage == "labels out of range" else images
    if damage == "zeros":
        np.save(images, np.zeros_like(first.train.images.numpy()))
    elif damage == "labels out of range":
        np.save(labels, np.full(len(first.train), 200, np.uint8))
    elif damage == "garbage":
        images.write_bytes(b"\x93NUMPY garbage")
    elif damage == "a huge shape":  # a header claiming 10^13 images: never allocated
        header = "{'descr': '|u1', 'fortran_order': False, 'shape': (10000000000000, 28, 28), }"
        images.write_bytes(
            b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
        )
    else:
        images.write_bytes(images.read_bytes()[:1000])
    with caplog.at_level("WARNING"):
        second = data.load("tiny", folder)
    assert torch.equal(second.train.images, first.train.images)
    assert torch.equal(second.train.labels, first.train.labels)
    assert f"decoded cache {target} does not match its source" in caplog.text
    assert target.is_file()  # rebuilt, and good from now on
    caplog.clear()
    data.load("tiny", folder)
    assert "does not match" not in caplog.text


def test_the_bytes_parsed_are_the_bytes_verified(tmp_path, tiny):
    # A file swapped in after it was verified (between hashing and parsing) is refused.
    folder, contents = tiny
    name = "t10k-labels-idx1-ubyte.gz"
    genuine = sha256(contents[name])
    (folder / name).write_bytes(gzip.compress(idx_bytes(np.zeros(256, np.uint8)), mtime=0))
    with pytest.raises(DataError, match="changed after it was verified"):
        data.read_idx(folder / name, genuine, sha256(contents[name.removesuffix(".gz")]))
    assert not list((tmp_path / "mnistlab").rglob("*.npy"))


def test_an_unreadable_file_or_an_overflowing_header_is_a_data_error(tiny, monkeypatch):
    folder, _ = tiny
    with pytest.raises(DataError, match="huge.idx: .* expected"):
        parse_idx(bytes([0, 0, 8, 3]) + b"\xff\xff\xff\xff" * 3, "huge.idx")
    unreadable = folder / "train-images-idx3-ubyte.gz"

    def guarded_open(path, *args, **kwargs):  # as root, chmod cannot make a file unreadable
        if Path(path) == unreadable:
            raise PermissionError(13, "Permission denied")
        return open(path, *args, **kwargs)

    monkeypatch.setattr(data, "open", guarded_open, raising=False)
    with pytest.raises(DataError, match="cannot read .*train-images-idx3-ubyte.gz: Permission"):
        data.load("tiny", folder)


def test_a_file_of_another_dataset_is_named_not_called_corrupt(tmp_path, tiny, monkeypatch):
    folder, contents = tiny
    other = {name: content for name, content in contents.items()}
    other["train-images-idx3-ubyte.gz"] = gzip.compress(b"another dataset", mtime=0)
    other["train-images-idx3-ubyte"] = b"another dataset"
    monkeypatch.setitem(datasets.DATASETS, "other", spec_for(other, name="other"))
    with pytest.raises(DataError) as error:
        data.load("other", folder)
    message = str(error.value)
    assert "is tiny's train-images-idx3-ubyte.gz" in message and "delete" not in message


# --- where files are found --------------------------------------------------------------------


class Mirror(http.server.BaseHTTPRequestHandler):
    """Serves files by path: /<behaviour>/<file>; behaviours are 403, close, wrong, flaky
    (503 the first time) and good."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - the name http.server calls
        type(self).requests.append(self.path)
        behaviour, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if behaviour == "403" or body is None:
            self.send_error(403 if behaviour == "403" else 404)
            return
        if behaviour == "flaky" and type(self).requests.count(self.path) == 1:
            self.send_error(503)  # only the first request for each file
            return
        if behaviour == "wrong":
            body = bytes(reversed(body))
        if behaviour in ("drip", "endless", "silent"):
            self.misbehave(behaviour, body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "close":  # half the body, then hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def misbehave(self, behaviour, body):
        """Bounded in time and bytes, as any test server must be."""
        if behaviour == "silent":  # accepts, then says nothing
            time.sleep(1.5)
            return
        self.send_response(200)
        if behaviour == "drip":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for index in range(60):  # at most 3 s of dripping, or 60 x 64 KiB of zeros
                if behaviour == "drip":
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
                else:
                    self.wfile.write(bytes(1 << 16))
        except OSError:  # the client hung up, as it should
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tiny):
    _, contents = tiny
    handler = type("Handler", (Mirror,), {"files": contents, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def use_mirrors(monkeypatch, contents, mirrors):
    monkeypatch.setitem(datasets.DATASETS, "tiny", spec_for(contents, mirrors=mirrors))


def test_download_falls_through_broken_mirrors(tmp_path, tiny, server, monkeypatch):
    _, contents = tiny
    base, handler = server
    use_mirrors(
        monkeypatch, contents, [f"{base}/403/", f"{base}/close/", f"{base}/wrong/", f"{base}/good/"]
    )
    files = data.locate("tiny", retries=0)
    for key, path in files.items():
        assert path.parent == tmp_path / "mnistlab" / "tiny"
        assert path.read_bytes() == contents[path.name], key
    tried = [path.split("/")[1] for path in handler.requests]
    assert tried[:4] == ["403", "close", "wrong", "good"]


def test_every_mirror_failing_lists_each_one_and_caches_nothing(
    tmp_path, tiny, server, monkeypatch
):
    _, contents = tiny
    base, _ = server
    mirrors = [f"{base}/403/", f"{base}/close/", f"{base}/wrong/", "http://127.0.0.1:9/"]
    use_mirrors(monkeypatch, contents, mirrors)
    with pytest.raises(DataError) as error:
        data.locate("tiny", retries=0)
    message = str(error.value)
    for expected in (
        "HTTP 403",
        "connection closed before the whole file arrived",
        "sha256 does not match",
        "could not connect",
        "not found",
        "To supply them by hand",
        "(or in another data_dir)",
    ):
        assert expected in message
    # The library names its settings; the command line writes them as its flags.
    from mnistlab.cli import _message

    assert "(or in another --data-dir), or add a mirror (--mirror, or" in _message(error.value)
    for mirror in mirrors:
        assert mirror + "train-images-idx3-ubyte.gz" in message
    leftovers = [p for p in (tmp_path / "mnistlab").rglob("*") if p.is_file()]
    assert [p.name for p in leftovers] == [".mnistlab.lock"]


def test_retries_only_what_may_pass(tiny, server, monkeypatch):
    # 503 is retried on the same mirror (and here succeeds the second time); 403 is not.
    _, contents = tiny
    base, handler = server
    use_mirrors(monkeypatch, contents, [f"{base}/403/", f"{base}/flaky/"])
    data.locate("tiny", retries=1)
    name = "train-images-idx3-ubyte.gz"
    assert [p for p in handler.requests if p.endswith(name)] == [
        f"/403/{name}",
        f"/flaky/{name}",
        f"/flaky/{name}",
    ]


def test_an_unreachable_mirror_is_tried_once_not_per_file(tiny, server, monkeypatch):
    _, contents = tiny
    base, _ = server
    use_mirrors(monkeypatch, contents, ["http://127.0.0.1:9/", f"{base}/403/"])
    with pytest.raises(DataError) as error:
        data.locate("tiny", retries=2)
    message = str(error.value)
    assert len(re.findall(r": could not connect$", message, re.MULTILINE)) == 1
    assert message.count("skipped (unreachable or too slow for an earlier file)") == 3
    assert message.count("HTTP 403") == 4


def test_user_mirror_comes_first(tiny, server, monkeypatch):
    _, contents = tiny
    base, handler = server
    use_mirrors(monkeypatch, contents, [f"{base}/403/"])
    data.locate("tiny", mirrors=(f"{base}/good/",), retries=0)
    assert all(path.startswith("/good/") for path in handler.requests)
    assert len(handler.requests) == 4


QUICK = Limits(connect=0.5, read=1.0, deadline=1.0, margin=1000, lock_wait=0.5)


@pytest.mark.parametrize("behaviour", ["drip", "endless", "silent"])
def test_a_misbehaving_mirror_is_bounded_and_skipped_for_the_other_files(
    tmp_path, tiny, server, monkeypatch, behaviour
):
    _, contents = tiny
    base, handler = server
    use_mirrors(monkeypatch, contents, [f"{base}/{behaviour}/", f"{base}/good/"])
    started = time.monotonic()
    files = data.locate("tiny", retries=2, limits=QUICK)
    assert time.monotonic() - started < 5
    assert all(path.read_bytes() == contents[path.name] for path in files.values())
    asked = [path for path in handler.requests if path.startswith(f"/{behaviour}/")]
    if behaviour == "endless":  # wrong bytes, not a slow mirror: asked for every file
        assert len(asked) == 4
    else:  # too slow once: skipped for the other three files, and never retried
        assert asked == [f"/{behaviour}/train-images-idx3-ubyte.gz"]
    folder = tmp_path / "mnistlab" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".mnistlab.lock", *files_of(contents)]
    )


def files_of(contents):
    return [name for name in contents if name.endswith(".gz")]


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("drip", "too slow"), ("endless", "cut off"), ("silent", "timed out")],
)
def test_a_misbehaving_mirror_is_named_with_what_it_did(
    tiny, server, monkeypatch, behaviour, reason
):
    _, contents = tiny
    base, _ = server
    use_mirrors(monkeypatch, contents, [f"{base}/{behaviour}/"])
    with pytest.raises(DataError) as error:
        data.locate("tiny", retries=0, limits=QUICK)
    assert f"{base}/{behaviour}/train-images-idx3-ubyte.gz: " in str(error.value)
    assert reason in str(error.value)


def test_a_black_holed_mirror_costs_one_connect_timeout_for_all_files(tiny, server, monkeypatch):
    # A listening socket whose one-place queue is full: the kernel drops further SYNs, as a
    # firewall that silently drops packets does.
    _, contents = tiny
    base, handler = server
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(hole.getsockname())
        fillers.append(filler)
    try:
        port = hole.getsockname()[1]
        use_mirrors(monkeypatch, contents, [f"http://127.0.0.1:{port}/", f"{base}/good/"])
        started = time.monotonic()
        files = data.locate("tiny", retries=2, limits=QUICK)
        assert len(files) == 4 and time.monotonic() - started < 3
        assert len(handler.requests) == 4
    finally:
        for filler in fillers:
            filler.close()
        hole.close()


def test_a_fetch_waiting_on_another_says_so_and_gives_up_after_its_deadline(
    tmp_path, tiny, server, monkeypatch, caplog
):
    from filelock import FileLock

    _, contents = tiny
    base, _ = server
    use_mirrors(monkeypatch, contents, [f"{base}/good/"])
    folder = tmp_path / "mnistlab" / "tiny"
    folder.mkdir(parents=True)
    lock = FileLock(str(folder / ".mnistlab.lock"))
    with lock, caplog.at_level("WARNING"), pytest.raises(DataError) as error:
        data.locate("tiny", limits=QUICK)
    assert "waiting for another mnistlab process to finish downloading" in caplog.text
    assert "gave up after 0.5 s waiting for another mnistlab process" in str(error.value)


def test_downloads_are_readable_by_others_and_stale_temporaries_go(
    tmp_path, tiny, server, monkeypatch
):
    _, contents = tiny
    base, _ = server
    use_mirrors(monkeypatch, contents, [f"{base}/good/"])
    folder = tmp_path / "mnistlab" / "tiny"
    folder.mkdir(parents=True)
    (folder / "tmpab12cd_9").write_bytes(b"left by a killed download")
    (folder / "my-notes.txt").write_text("not ours")
    files = data.locate("tiny", limits=QUICK)
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in files.values())
    assert not (folder / "tmpab12cd_9").exists() and (folder / "my-notes.txt").exists()


def _fetch_in_process(args):
    url, folder, name, digest = args
    path, failures = fetch.download(name, digest, [url], Path(folder), retries=0)
    return str(path), failures


@pytest.mark.slow
def test_two_processes_fetching_at_once_download_once(tmp_path, tiny, server):
    _, contents = tiny
    base, handler = server
    name = "train-images-idx3-ubyte.gz"
    job = (f"{base}/good/", str(tmp_path / "shared-cache"), name, sha256(contents[name]))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_fetch_in_process, [job, job])
    assert [failures for _, failures in results] == [[], []]
    assert (tmp_path / "shared-cache" / name).read_bytes() == contents[name]
    assert handler.requests == [f"/good/{name}"]  # the second waited and found it done


def test_explicit_folder_is_used_without_any_download(tiny, server, monkeypatch):
    folder, contents = tiny
    base, handler = server
    use_mirrors(monkeypatch, contents, [f"{base}/good/"])
    files = data.locate("tiny", folder)
    assert {path.parent for path in files.values()} == {folder}
    assert handler.requests == []


def test_the_environment_is_read_by_the_command_and_the_api_and_the_library_takes_values(
    tmp_path, tiny, server, monkeypatch, capsys
):
    import mnistlab
    from mnistlab.cli import main

    folder, contents = tiny
    base, handler = server
    use_mirrors(monkeypatch, contents, [f"{base}/403/"])
    elsewhere = tmp_path / "elsewhere-cache"
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(folder))
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(elsewhere))
    monkeypatch.setenv("MNISTLAB_MIRROR", f"tiny={base}/good/")
    # The library: only what it is given. No data folder, no mirror of the variables.
    with pytest.raises(DataError, match="could not find or download tiny"):
        data.locate("tiny", retries=0)
    assert handler.requests and all(path.startswith("/403/") for path in handler.requests)
    files = data.locate("tiny", folder, cache_dir=tmp_path / "given", download_missing=False)
    assert {path.parent for path in files.values()} == {folder}
    data.load("tiny", folder, cache_dir=tmp_path / "given")
    assert len(list((tmp_path / "given" / "decoded").glob("*.npy"))) == 4
    assert not elsewhere.exists()
    # The command line and the notebook API: the variables' folders and mirror.
    assert main(["data", "info", "--dataset", "tiny"]) == 0 and "512" in capsys.readouterr().out
    assert len(list((elsewhere / "decoded").glob("*.npy"))) == 4
    assert len(mnistlab.load_data("tiny").train) == 512
    monkeypatch.delenv("MNISTLAB_DATA_DIR")
    handler.requests.clear()
    assert len(mnistlab.load_data("tiny").train) == 512  # fetched from the variable's mirror
    assert {path.split("/")[1] for path in handler.requests} == {"good"}
    assert len(list((elsewhere / "tiny").glob("*.gz"))) == 4


@pytest.mark.parametrize("compressed", [True, False])
def test_torchvision_layout_is_found_without_download(
    tmp_path, tiny, server, monkeypatch, compressed
):
    _, contents = tiny
    base, handler = server
    use_mirrors(monkeypatch, contents, [f"{base}/good/"])
    raw_folder = tmp_path / "data" / "Tiny" / "raw"  # ./data/<Name>/raw, as the notebook left it
    raw_folder.mkdir(parents=True)
    for name, content in contents.items():
        if name.endswith(".gz") == compressed:
            (raw_folder / name).write_bytes(content)
    dataset = data.load("tiny")
    assert {path.parent.resolve() for path in dataset.files.values()} == {raw_folder}
    assert len(dataset.train) == 512 and len(dataset.test) == 256
    assert handler.requests == []


def test_wrong_local_file_is_never_used(tiny):
    folder, contents = tiny
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    expected = sha256(contents["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(DataError) as error:
        data.load("tiny", folder)
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and expected in message
    assert "delete it" in message


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown dataset 'kmnist2'; choose one of: mnist"):
        data.load("kmnist2")


# --- in-memory batches ------------------------------------------------------------------------


def test_batches_cover_the_epoch_once_in_a_seeded_order():
    x = torch.arange(10.0).reshape(10, 1).repeat(1, 3)
    y = torch.arange(10)

    def epoch(seed):
        generator = torch.Generator().manual_seed(seed)
        return [(bx.clone(), by.clone()) for bx, by in resident.batches(x, y, 4, generator)]

    first = epoch(3)
    assert [len(by) for _, by in first] == [4, 4, 2]
    order = torch.cat([by for _, by in first])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in first)  # rows stay with labels
    assert torch.equal(order, torch.cat([by for _, by in epoch(3)]))
    assert not torch.equal(order, torch.cat([by for _, by in epoch(4)]))


def test_validation_split_is_deterministic_and_disjoint(tiny):
    folder, _ = tiny
    train = data.load("tiny", folder).train
    kept, held = resident.split_validation(train, 0.25, seed=0)
    again, _ = resident.split_validation(train, 0.25, seed=0)
    assert len(held) == 128 and len(kept) == 384
    assert torch.equal(kept.labels, again.labels)
    rows = {bytes(image.numpy()) for image in kept.images}
    assert not any(bytes(image.numpy()) in rows for image in held.images)


def test_inputs_are_normalised_once():
    images = torch.tensor([[[0, 255]]], dtype=torch.uint8).repeat(4, 1, 1)
    x = resident.to_inputs(images, 0.5, 0.5)
    assert x.shape == (4, 2) and x.dtype == torch.float32
    assert torch.allclose(x, torch.tensor([[-1.0, 1.0]]).repeat(4, 1))


def test_synthetic_writer_matches_the_parser(tmp_path):
    contents = write_dataset(tmp_path / "d", train=20, test=10)
    labels = parse_idx(contents["train-labels-idx1-ubyte"])
    assert labels.shape == (20,) and set(labels) == set(range(10))


def test_normalization_is_the_pixel_mean_and_std(tiny):
    folder, _ = tiny
    train = data.load("tiny", folder).train
    pixels = train.images.to(torch.float64) / 255
    mean, std = resident.pixel_statistics(train)
    assert mean == pytest.approx(pixels.mean().item(), rel=1e-12)
    assert std == pytest.approx(pixels.std().item(), rel=1e-12)


def test_batches_can_skip_the_start_of_an_epoch():
    x = torch.arange(10.0).reshape(10, 1)
    y = torch.arange(10)
    whole = [by.clone() for _, by in resident.batches(x, y, 3, torch.Generator().manual_seed(5))]
    rest = [by.clone() for _, by in resident.batches(x, y, 3, torch.Generator().manual_seed(5), 2)]
    assert [b.tolist() for b in rest] == [b.tolist() for b in whole[2:]]
    assert [b.tolist() for _, b in resident.batches(x, y, 4, skip=1)] == [[4, 5, 6, 7], [8, 9]]


def test_a_download_says_where_it_goes_once(tmp_path, tiny, server, monkeypatch, capsys):
    from mnistlab.cli import main

    _, contents = tiny
    base, _ = server
    use_mirrors(monkeypatch, contents, [f"{base}/good/"])
    assert main(["data", "fetch", "--dataset", "tiny", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("mnistlab: downloading tiny's") == 1
    assert str((tmp_path / "mnistlab" / "tiny").resolve()) in err


def test_a_registry_file_adds_datasets_and_a_broken_one_is_one_line(tmp_path, tiny, monkeypatch):
    import mnistlab
    from mnistlab.cli import main

    monkeypatch.delitem(datasets.DATASETS, "tiny")  # only the registry file knows it now
    with pytest.raises(ConfigError, match="unknown dataset 'tiny'"):
        data.load("tiny", tiny[0])  # the library reads no variable: an edge names the file
    assert len(mnistlab.load_data("tiny", tiny[0]).train) == 512
    assert "tiny" in datasets.registry() and "mnist" in datasets.registry()
    (tmp_path / "broken.json").write_text('{"mine": {"files": {}}}')
    monkeypatch.setenv("MNISTLAB_DATASETS", str(tmp_path / "broken.json"))
    with pytest.raises(ConfigError, match="not a dataset registry"):
        mnistlab.load_data("mine")
    assert main(["data", "info", "--dataset", "mine"]) == 2
