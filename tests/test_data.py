"""ImageDataset (folders, zips, preparation, skipping, cache) and infinite_loader (determinism, sharding)."""
from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

import toonlib.align
from toonlib.data import ImageDataset, infinite_loader

RES = 15  # the 30 px tall images crop to 30 x 30 and halve exactly


def draw(index: int) -> Image.Image:
    """40 x 30: red left margin and green right margin (both cropped away), a coloured body, a white centre."""
    image = Image.new("RGB", (40, 30), (20 + 10 * index, 0, 200))
    paint = ImageDraw.Draw(image)
    paint.rectangle([0, 0, 4, 29], fill=(255, 0, 0))
    paint.rectangle([35, 0, 39, 29], fill=(0, 255, 0))
    paint.rectangle([15, 10, 24, 19], fill=(255, 255, 255))
    paint.ellipse([6, 2, 12, 8], fill=(0, 0, 10 * index))  # top-left marker, to see mirroring
    return image


def name(index: int) -> str:
    """Where `make_folder` puts image `index`: in the root, `sub/` or `sub/deeper/`; image 5 is a .bmp."""
    return ["sub/deeper/", "sub/", ""][index % 3] + f"img{index:02d}" + (".bmp" if index == 5 else ".png")


def make_folder(root: Path, count: int = 20) -> Path:
    """`count` images (some in sub-folders, mixed formats), a corrupt .png, a text file and hidden files."""
    for i in range(count):
        path = root / name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(i).save(path)
    (root / "sub" / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "notes.txt").write_text("not an image")
    # what a Mac or a file browser leaves behind, all left out: a resource fork, a hidden folder of valid images
    (root / "._img00.png").write_bytes(b"resource fork")
    (root / ".thumbnails").mkdir()
    draw(0).save(root / ".thumbnails" / "img00.png")
    return root


def make_zip(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder).as_posix())
        archive.writestr("__MACOSX/._img00.png", b"resource fork")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "faces")


def load(source: Path, **kwargs) -> ImageDataset:
    with pytest.warns(UserWarning, match="corrupt.png"):
        return ImageDataset(source, RES, progress=False, **kwargs)


def test_folder_and_zip_give_the_same_images(folder, tmp_path):
    from_folder = load(folder)
    from_zip = load(make_zip(folder, tmp_path / "faces.zip"))
    assert len(from_folder) == from_folder.num_images == 20
    assert from_folder.names == from_zip.names == sorted(from_folder.names)
    assert from_folder.names == sorted(name(i) for i in range(20))
    assert from_folder.images.shape == (20, 3, RES, RES) and from_folder.images.dtype == torch.uint8
    assert torch.equal(from_folder.images, from_zip.images)
    assert from_folder.skipped == from_zip.skipped
    assert [name for name, _ in from_folder.skipped] == ["sub/corrupt.png"]  # hidden files are not even tried


def test_crop_keeps_the_centre(folder):
    dataset = load(folder)
    image = dataset[dataset.names.index(name(7))]
    assert image.shape == (3, RES, RES) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    pixels = ((image + 1) * 127.5).round()
    assert pixels[:, 6:9, 6:9].min() >= 250  # the white centre square (5..9 once halved)
    assert pixels[0, :, 0].max() < 150 and pixels[1, :, -1].max() < 60  # red / green margins cropped away
    assert abs(pixels[0, 0, 7].item() - (20 + 70)) <= 3 and abs(pixels[2, 0, 7].item() - 200) <= 3


NO_FORMAT = ("it is in no image format toonlib reads (JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF and the others Pillow "
             "opens)")


def test_unreadable_files_are_reported_and_skipped(folder, tmp_path):
    with pytest.warns(UserWarning, match=r"skipped 1 of 21 images .*\n  sub/corrupt.png: it is in no image format"):
        dataset = ImageDataset(folder, RES, progress=False)
    assert dataset.skipped == [("sub/corrupt.png", NO_FORMAT)]
    shutil.copytree(folder, tmp_path / "pages")  # a web page saved as .jpg was "not an image (unrecognised format)"
    (tmp_path / "pages" / "sub" / "corrupt.png").write_bytes(b"<!DOCTYPE html><html><body>Quota exceeded</body></html>")
    with pytest.warns(UserWarning, match=r"corrupt.png: it is a web page \(HTML\), not an image: save the image"):
        ImageDataset(tmp_path / "pages", RES, progress=False)
    assert "notes.txt" not in dataset.names and len(dataset) == 20


def test_an_image_over_pillows_limit_is_skipped_with_what_to_do_and_no_nameless_warning(folder, monkeypatch):
    """A 14000 x 14000 photo was skipped as "cannot read: Image size (196000000 pixels) exceeds limit of 178956970
    pixels, could be decompression bomb DOS attack.", and one of 100 megapixels got Pillow's warning, naming no file."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # the 40 x 30 images stay below it
    Image.new("RGB", (80, 60)).save(folder / "huge.png")  # over twice the limit: Pillow refuses it
    Image.new("RGB", (50, 40)).save(folder / "large.png")  # over the limit: Pillow warns, and reads it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageDataset(folder, RES, progress=False)
    said = [str(warning.message) for warning in caught]
    assert not any("decompression bomb" in text for text in said), said
    assert ("huge.png", f"4800 pixels, more than Pillow opens in one image (3000 at most): downscale it (training uses "
                        f"{RES} x {RES} px)") in dataset.skipped
    assert "large.png" in dataset.names


def test_a_damaged_zip_member_is_skipped_and_a_password_protected_zip_refused(folder, tmp_path):
    """One damaged image in a .zip stopped the run with zipfile's traceback ("Bad CRC-32 for file ...", a deflated
    member's zlib.error), and a password-protected zip with "File ... is encrypted" (a RuntimeError), where a damaged
    file of a folder is skipped."""
    archive = make_zip(folder, tmp_path / "faces.zip")
    with zipfile.ZipFile(archive) as zf:
        stored = zf.getinfo(name(2))
    data = bytearray(archive.read_bytes())
    data[stored.header_offset + 30 + len(stored.filename) + 100] ^= 0xFF  # one byte of its image data
    (tmp_path / "crc.zip").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=rf"skipped 2 of 21 images .*\n  {name(2)}: cannot read: Bad CRC-32"):
        dataset = ImageDataset(tmp_path / "crc.zip", RES, progress=False)
    assert name(2) not in dataset.names and len(dataset) == 19

    with zipfile.ZipFile(tmp_path / "deflated.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(9):
            zf.writestr(f"{i}.png", (folder / name(i)).read_bytes() if name(i).endswith(".png") else b"")
    data = bytearray((tmp_path / "deflated.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / "deflated.zip") as zf:
        member = zf.getinfo("0.png")
    start = member.header_offset + 30 + len(member.filename)
    data[start:start + 40] = bytes(40)  # its compressed stream
    (tmp_path / "deflated.zip").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"\n  0.png: cannot read: "):
        dataset = ImageDataset(tmp_path / "deflated.zip", RES, progress=False, min_images=1)
    assert "0.png" not in dataset.names and "1.png" in dataset.names

    with zipfile.ZipFile(tmp_path / "locked.zip", "w") as zf:
        for i in range(9):
            zf.writestr(f"{i}.png", b"encrypted bytes")
    data = bytearray((tmp_path / "locked.zip").read_bytes())  # marked as `zip -P secret` marks them: encrypted
    with zipfile.ZipFile(tmp_path / "locked.zip") as zf:
        for info in zf.infolist():
            data[info.header_offset + 6] |= 1  # the local header's flag bit 0
    entry = data.find(b"PK\x01\x02")
    while entry != -1:  # and each central directory entry's
        data[entry + 8] |= 1
        entry = data.find(b"PK\x01\x02", entry + 4)
    (tmp_path / "locked.zip").write_bytes(data)
    with pytest.raises(ValueError, match=r"^'.*locked.zip' is a password-protected \.zip: extract it \(unzip it with "
                                         r"its password\) and give the folder of images$"):
        ImageDataset(tmp_path / "locked.zip", RES, progress=False)


def test_a_run_folder_inside_the_data_folder_is_left_out(folder):
    """An earlier run's folder kept beside the images had its fakes grids and metrics plot trained on as faces; one
    stopped in its first snapshot (its lock, no training state yet) too. A file another tool named latest.json marks
    no run folder, in the data folder itself or below it."""
    old, starting = folder / "runs" / "old", folder / "runs" / "starting"
    (old / ".locks").mkdir(parents=True)
    (old / "training-state-000000004.pt").write_bytes(b"a training state")
    (starting / ".locks").mkdir(parents=True)
    (starting / ".locks" / "run.lock").write_bytes(b"")
    for run in (old, starting):
        for image in ("fakes-000000004.png", "metrics.png"):
            draw(1).save(run / image)
    (folder / "latest.json").write_text("{}")  # another tool's file
    (folder / "sub" / "latest.json").write_text("{}")
    with pytest.warns(UserWarning, match=r"^left out 2 fine-tuning run folders inside '.*faces' \('runs/old', "
                                         r"'runs/starting'\): their fakes grids and plots are no training images; "
                                         r"keep run folders outside the data folder$"):
        dataset = load(folder)
    assert len(dataset) == 20 and not [n for n in dataset.names if n.startswith("runs/")]
    (folder / "sub" / "latest.json").unlink()
    (folder / "sub" / ".locks").mkdir()  # a lock file alone: what a run left where its files were deleted (a folder of
    (folder / "sub" / ".locks" / "run.lock").write_bytes(b"")  # photos given as --run-dir by mistake; audit)
    with pytest.warns(UserWarning, match=r"^left out 2 fine-tuning run folders inside '.*faces' \('runs/old', "
                                         r"'runs/starting'\)"):
        assert len(load(folder)) == 20  # sub's images are trained on
    from toonlib.train.snapshots import has_run

    assert not has_run(folder / "sub") and has_run(folder / "runs" / "starting") and has_run(folder / "runs" / "old")
    # the same folder as a .zip (its hidden files too, as `zip -r` keeps them): the run folders were trained on
    zipped = folder.parent / "zipped-faces.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())
    with pytest.warns(UserWarning, match=r"^left out 2 fine-tuning run folders inside '.*zipped-faces.zip' "
                                         r"\('runs/old', 'runs/starting'\): their fakes grids"):
        dataset = load(zipped)
    assert len(dataset) == 20 and not [n for n in dataset.names if n.startswith("runs/")]


def test_a_long_list_of_skipped_images_names_the_first_few(tmp_path):
    """60 non-square images gave 60 lines of warning, again at every resume."""
    for i in range(16):
        Image.new("RGB", (30, 20) if i < 8 else (30, 30), (i, i, i)).save(tmp_path / f"{i:02d}.png")  # no copies
    with pytest.warns(UserWarning) as caught:
        dataset = ImageDataset(tmp_path, RES, prepare="none", progress=False)
    [text] = [str(w.message) for w in caught if "skipped" in str(w.message)]
    reason = "not square (30x20); use prepare='crop' or 'align'"
    assert text.splitlines() == [f"skipped 8 of 16 images in '{tmp_path}':",
                                 *(f"  {i:02d}.png: {reason}" for i in range(5)), "  ... and 3 more"]
    assert len(dataset.skipped) == 8 and dataset.num_images == 8


def test_too_few_images_is_an_error(tmp_path):
    make_folder(tmp_path, count=3)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"found 3 usable .* \(1 skipped"):
        ImageDataset(tmp_path, RES, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"found 0 usable images in '.*empty' \(no image files: their names end in "
                                         r"\.jpg, \.jpeg, \.png, "):
        ImageDataset(tmp_path / "empty", RES, progress=False, min_images=1)
    (tmp_path / "broken").mkdir()
    shutil.copy(tmp_path / "sub" / "corrupt.png", tmp_path / "broken")
    all_skipped = r"found 0 usable images in '.*broken' \(1 skipped, see the warning\); need at least 8$"
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=all_skipped):
        ImageDataset(tmp_path / "broken", RES, progress=False)  # all skipped: it listed the file kinds it reads
    assert len(load(tmp_path, min_images=3)) == 3
    zipped = tmp_path / "zipped"  # a folder holding the .zip of the faces: "no image files", the zip unsaid
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "Toons.ZIP", "w") as archive:
        archive.write(tmp_path / "sub" / "corrupt.png", "a.png")
    with pytest.raises(ValueError, match=r"found 0 usable images in '.*zipped' \(no image files: their names end in "
                                         r"\.jpg, .*; it holds a \.zip: give that file itself, .*zipped/Toons\.ZIP\); "
                                         r"need"):
        ImageDataset(zipped, RES, progress=False, min_images=1)


def test_a_refused_data_set_writes_no_cache(tmp_path):
    make_folder(tmp_path / "few", count=3)
    accepted = []
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="found 3 usable"):
        ImageDataset(tmp_path / "few", RES, progress=False, cache_dir=tmp_path / "cache",
                     on_accept=lambda: accepted.append(True))
    assert not (tmp_path / "cache").exists()  # a fine-tuning run that stops at its start leaves nothing behind
    assert not accepted  # where a fine-tuning run takes its new run folder


def test_on_accept_is_called_before_the_cache_is_written(folder, tmp_path):
    cache = tmp_path / "cache"
    accepted = []
    load(folder, cache_dir=cache, on_accept=lambda: accepted.append(cache.exists()))
    load(folder, cache_dir=cache, on_accept=lambda: accepted.append("again"))  # read from the cache: nothing written
    assert accepted == [False]


def test_images_smaller_than_the_resolution_are_said_in_one_warning(tmp_path):
    """A 20x20 image was enlarged to the training size without a word."""
    data = tmp_path / "faces"
    data.mkdir()
    for i in range(8):
        Image.new("RGB", (10, 12) if i in (2, 5, 6) else (30, 30), (30 * i, 0, 0)).save(data / f"{i}.png")
    for _ in range(2):  # prepared, then from the cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = ImageDataset(data, RES, progress=False, cache_dir=tmp_path / "cache")
        assert [str(w.message) for w in caught] == [
            f"3 of 8 images in '{data}' are smaller than the training resolution, 15x15 (e.g. 2.png, 10x12): "
            "enlarged to it, such images are blurred; larger ones make a sharper model"]
    assert dataset.enlarged == [("2.png", 10, 12), ("5.png", 10, 12), ("6.png", 10, 12)]


def test_xflip_doubles_with_mirrored_copies(folder):
    dataset = load(folder, xflip=True)
    assert len(dataset) == 2 * dataset.num_images == 40
    for i in (0, 13):
        assert torch.equal(dataset[i + 20], dataset[i].flip(-1))
        assert not torch.equal(dataset[i + 20], dataset[i])
    with pytest.raises(IndexError):
        dataset[40]


def test_cache_is_written_reused_and_invalidated(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load(folder, cache_dir=cache)
    assert first.cache_path.is_file() and list(cache.iterdir()) == [first.cache_path]

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded despite the cache")

    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", no_decoding)
        again = load(folder, cache_dir=cache)
    assert again.cache_path == first.cache_path
    assert torch.equal(again.images, first.images) and again.names == first.names
    assert again.skipped == first.skipped

    changed = folder / name(3)
    draw(15).save(changed)
    os.utime(changed, ns=(1, 1))  # a new mtime whatever the file system's clock resolution
    updated = load(folder, cache_dir=cache)
    assert torch.equal(updated.images[updated.names.index(name(3))], first.images[first.names.index(name(15))])
    assert updated.content_key != first.content_key  # the metric's cache of the real images follows it
    again = load(folder, cache_dir=cache)  # cached anew (under the same name when the size stayed the same)
    assert torch.equal(again.images, updated.images) and again.content_key == updated.content_key


def test_the_same_images_uploaded_again_keep_the_cache(folder, tmp_path, monkeypatch):
    """The cache was named by the files' times too: the same images uploaded to a new Colab runtime (new times) or
    copied were all prepared again (with 'align', minutes of face detection), and a resumed run said they had all
    been replaced. Their contents are compared where the times differ: an edited image is prepared again."""
    cache = tmp_path / "cache"
    first = load(folder, cache_dir=cache)
    for path in folder.rglob("*.png"):
        os.utime(path, ns=(7, 7))  # every file written again with the same bytes

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded despite the cache")

    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", no_decoding)
        again = load(folder, cache_dir=cache)
    assert torch.equal(again.images, first.images) and again.cache_path == first.cache_path
    assert again.content_key == first.content_key and again.digests == first.digests
    assert again.files != first.files  # the times as they are now (what a training state records)

    size = (folder / name(5)).stat().st_size
    Image.open(folder / name(6)).save(folder / name(5))  # another image in the .bmp, of the same size
    assert (folder / name(5)).stat().st_size == size
    updated = load(folder, cache_dir=cache)
    assert torch.equal(updated.images[updated.names.index(name(5))], first.images[first.names.index(name(6))])
    assert updated.content_key != first.content_key and updated.cache_path == first.cache_path

def test_linked_folders_are_read_and_links_to_nothing_said(tmp_path):
    """Images in a linked folder were left out without a word (Path.rglob does not follow links, Python < 3.13): 6
    usable images where 11 were there. A link to nothing went unsaid too; a link to a folder above is no loop."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir(), elsewhere.mkdir()
    for i in range(5):
        draw(i).save(data / f"{i}.png")
        draw(i + 5).save(elsewhere / f"{i}.png")
    (data / "more").symlink_to(elsewhere, target_is_directory=True)
    (data / "more" / "up").symlink_to(data, target_is_directory=True)  # a loop, through the linked folder
    (data / "gone.png").symlink_to(tmp_path / "deleted.png")
    (data / "loop.png").symlink_to(data / "loop.png")  # it stopped the data set (ELOOP), left out before
    (tmp_path / "other").mkdir()
    draw(10).save(tmp_path / "other" / "x.png")
    (data / "up").symlink_to(tmp_path, target_is_directory=True)  # above the data: other/ is no data through it
    with pytest.warns(UserWarning, match=r"skipped 2 of 12 images .*\n  gone\.png: the file is not there \(a link "
                                         r"to nothing\?\)\n  loop\.png: cannot read: Too many levels of symbolic "
                                         r"links$"):
        dataset = ImageDataset(data, RES, progress=False)
    assert dataset.names == [f"{i}.png" for i in range(5)] + [f"more/{i}.png" for i in range(5)]


def test_a_damaged_cache_is_prepared_again(folder, tmp_path, monkeypatch):
    """The prepared images' cache is the largest file of a run folder, the one a partial Drive sync cuts: cut short
    (or another file in its place), it stopped every resume with torch's "checkpoint corrupted" traceback."""
    cache = tmp_path / "cache"
    first = load(folder, cache_dir=cache)
    whole = first.cache_path.read_bytes()
    for damaged in (whole[:100], b"", None):
        if damaged is None:
            torch.save({"images": [1, 2]}, first.cache_path)  # readable, and no cache of prepared images
        else:
            first.cache_path.write_bytes(damaged)
        with pytest.warns(UserWarning, match=rf"^{first.cache_path} is no usable cache of the prepared images "
                                             r"\(\w+(: .*)?\): deleted, the images are prepared again$"):
            again = load(folder, cache_dir=cache)
        assert torch.equal(again.images, first.images) and again.names == first.names
        assert first.cache_path.read_bytes() == whole  # written anew
    # memory running out says nothing of the file: a valid cache was deleted, and making it again needed that memory
    with monkeypatch.context() as patched:
        patched.setattr(torch, "load", lambda *args, **kwargs: (_ for _ in ()).throw(
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 900 MB")))
        with pytest.raises(RuntimeError, match="can't allocate memory"):
            ImageDataset(folder, RES, progress=False, cache_dir=cache)
    assert first.cache_path.read_bytes() == whole


def test_none_mode_resizes_squares_and_skips_others(tmp_path):
    for i in range(8):
        Image.new("RGB", (30, 30) if i else (RES, RES), (i * 30, 50, 50)).save(tmp_path / f"{i}.png")
    Image.new("RGB", (30, 20)).save(tmp_path / "wide.png")
    with pytest.warns(UserWarning, match="wide.png: not square"):
        dataset = ImageDataset(tmp_path, RES, prepare="none", progress=False)
    assert dataset.images.shape == (8, 3, RES, RES) and dataset.images[3, 0].eq(90).all()


def test_exif_orientation_and_transparency(tmp_path):
    upright = Image.new("RGB", (20, 20), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 20, 10))  # red top half
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: view it turned 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "transparent.png")
    dataset = ImageDataset(tmp_path, RES, prepare="none", progress=False, min_images=2)
    rotated, transparent = (dataset.images[dataset.names.index(n)].int() for n in ("rotated.jpg", "transparent.png"))
    assert rotated[0, 2].min() > 200 and rotated[2, 2].max() < 50  # red on top
    assert rotated[0, -3].max() < 50 and rotated[2, -3].min() > 200  # blue at the bottom
    assert transparent.eq(255).all()  # transparency composited on white


def test_align_mode_uses_align_face_and_skips_faceless_images(folder, monkeypatch):
    calls = []

    def fake_align_face(image, output_size=1024, detector="auto", device=None):
        calls.append((output_size, device))
        if image.getpixel((20, 2))[0] == 20 + 10 * 4:  # the body colour of img04
            raise toonlib.align.NoFaceError("no face found in the image")
        face = ImageOps.fit(image, (output_size, output_size), Image.Resampling.LANCZOS)  # the centre crop
        return toonlib.align.AlignedFace(face, np.zeros((68, 2)), np.zeros((4, 2)), 10.0)

    monkeypatch.setattr(toonlib.align, "align_face", fake_align_face)
    with pytest.warns(UserWarning, match=f"{name(4)}: no face found") as said:
        aligned = ImageDataset(folder, RES, prepare="align", progress=False, device=torch.device("cpu"))
    assert calls == [(RES, "cpu")] * 20 and name(4) not in aligned.names and len(aligned) == 19
    assert aligned.skipped == [("sub/corrupt.png", NO_FORMAT), (name(4), "no face found")]
    cropped = load(folder)
    assert torch.equal(aligned[aligned.names.index(name(7))], cropped[cropped.names.index(name(7))])
    # faces smaller than the resolution, said once by name and face size (align's own warning named no file and the
    # photos' sizes hid them; thirty-fourth session's audit); cartoons where no face is found get the crop mode named
    small = [str(w.message) for w in said if "smaller than the training resolution" in str(w.message)]
    assert small == [f"19 of 19 images in '{folder}' have faces smaller than the training resolution, 15x15 (e.g. "
                     f"{aligned.names[0]}, its face 10 px wide): enlarged to it, such images are blurred; larger ones "
                     "make a sharper model"]
    monkeypatch.setattr(toonlib.align, "align_face", lambda *args, **kwargs: (_ for _ in ()).throw(
        toonlib.align.NoFaceError("no face")))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"\(21 skipped, see the warning: the face "
                                                                   r"detector found no face in 20 of them; for drawn "
                                                                   r"or cartoon faces, which it misses, use "
                                                                   r"prepare='crop' on images") as refused:
        ImageDataset(folder, RES, prepare="align", progress=False)
    from toonlib.commands import for_command_line

    assert "use --prepare crop on images roughly centred" in for_command_line(refused.value)  # not prepare='crop'


def take(loader, count: int) -> list[torch.Tensor]:
    return list(itertools.islice(loader, count))


def test_loader_is_deterministic_and_resumable(folder):
    dataset = load(folder, xflip=True)
    batches = take(infinite_loader(dataset, 6, seed=3), 15)  # 90 samples: more than two epochs of 40
    assert all(batch.shape == (6, 3, RES, RES) for batch in batches)
    assert all(torch.equal(a, b) for a, b in zip(batches, take(infinite_loader(dataset, 6, seed=3), 15)))
    assert not torch.equal(batches[0], next(infinite_loader(dataset, 6, seed=4)))
    resumed = take(infinite_loader(dataset, 6, seed=3, start_batch=9), 6)
    assert all(torch.equal(a, b) for a, b in zip(batches[9:], resumed))


def sample_ids(dataset: ImageDataset, batch: torch.Tensor) -> list[int]:
    """Which dataset index each image of a batch is (all 40 samples of the flipped dataset differ)."""
    everything = torch.stack([dataset[i] for i in range(len(dataset))])
    return [int((everything == image).flatten(1).all(1).nonzero()) for image in batch]


def test_loader_shards_each_epoch_across_ranks(folder):
    dataset = load(folder, xflip=True)  # 40 samples = 5 global batches of 2 ranks x 4 per epoch
    ranks = [[sample_ids(dataset, batch) for batch in take(infinite_loader(dataset, 4, seed=1, rank=rank,
                                                                           world_size=2), 10)]
             for rank in (0, 1)]
    epochs = [[i for shard in ranks for batch in shard[5 * e:5 * e + 5] for i in batch] for e in (0, 1)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(40))  # disjoint shards covering each epoch
    assert epochs[0] != epochs[1]  # reshuffled
    single = [sample_ids(dataset, batch) for batch in take(infinite_loader(dataset, 8, seed=1), 10)]
    assert single == [a + b for a, b in zip(*ranks)]  # the ranks split the single-process batches


def test_a_skip_whose_cause_is_gone_is_not_kept_by_the_cache(folder, tmp_path, monkeypatch):
    """A photo skipped for want of a reader (HEIC before `pip install pillow-heif`, AVIF before a newer Pillow), or a
    .zip member damaged in a download since made again, stayed skipped: the cache was reused, the old advice said
    again. A skip of the file's own making (no face) stands without a new look."""
    cache = tmp_path / "cache"
    opened = Image.open

    def no_reader_for_5(source, *args, **kwargs):  # image 5 (a .bmp) in a format this Pillow "does not read"
        image = opened(source, *args, **kwargs)
        if image.format == "BMP":
            raise toonlib.data.UnidentifiedImageError("cannot identify image file")
        return image

    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", no_reader_for_5)
        with pytest.warns(UserWarning, match=name(5)):
            before = ImageDataset(folder, RES, progress=False, cache_dir=cache)
    assert name(5) not in before.names
    after = load(folder, cache_dir=cache)  # the reader installed: prepared again, image 5 among them
    assert name(5) in after.names and after.content_key != before.content_key
    # a file Pillow opens but preparing refuses (read_image: a float TIFF) stays skipped, the cache used: it was
    # prepared again at every start, each thinking the skip's cause gone (review)
    read_image = toonlib.data.read_image

    def refusing_5(image):
        if image.format == "BMP":
            raise ValueError("not an image this reads")
        return read_image(image)

    monkeypatch.setattr(toonlib.data, "read_image", refusing_5)
    with pytest.warns(UserWarning, match=name(5)):
        ImageDataset(folder, RES, progress=False, cache_dir=tmp_path / "another cache")
    monkeypatch.setattr(toonlib.data, "_prepare_all", lambda *args: pytest.fail("prepared again despite the cache"))
    with pytest.warns(UserWarning, match=name(5)):
        ImageDataset(folder, RES, progress=False, cache_dir=tmp_path / "another cache")


def test_the_user_folder_is_expanded_in_the_source_and_the_cache(folder, tmp_path, monkeypatch):
    """`ImageDataset("~/faces", cache_dir="~/cache")`: the source was "no such folder", and the cache, written under
    the home folder, was looked for in a folder named '~': every start prepared the images again."""
    monkeypatch.setenv("HOME", str(folder.parent))
    monkeypatch.chdir(tmp_path)
    first = load(Path("~") / folder.name, cache_dir="~/cache")
    assert first.cache_path == folder.parent / "cache" / first.cache_path.name and first.cache_path.is_file()
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("an image was decoded despite the cache"))
    monkeypatch.setattr(toonlib.data, "_readable_now", lambda read, name: False)  # the skipped corrupt.png
    assert torch.equal(load(Path("~") / folder.name, cache_dir="~/cache").images, first.images)


def test_an_io_error_reading_an_image_names_it(folder, monkeypatch):
    """A file Google Drive could not fetch stopped the run with "[Errno 5] Input/output error", naming no file."""
    read_bytes = Path.read_bytes

    def failing(path: Path) -> bytes:
        if path.name == Path(name(7)).name:
            raise OSError(5, "Input/output error")  # raised by read(), after open(): no file name
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(OSError, match=rf"^\[Errno 5\] cannot read the training image '{name(7)}': Input/output error "
                                      r"\(on Google Drive"):
        ImageDataset(folder, RES, progress=False)


def test_a_zip_beside_loose_images_is_said_to_be_left_out(folder, tmp_path):
    """faces/ with a few loose images and more_faces.zip: the zip's images were left out without a word; one in a
    sub-folder still was (thirty-fourth session's audit), and a sub-folder holding only a zip got no hint."""
    make_zip(make_folder(tmp_path / "more"), folder / "more_faces.zip")
    (folder / "batch2").mkdir()
    shutil.copy(folder / "more_faces.zip", folder / "batch2" / "batch2.zip")
    with pytest.warns(UserWarning) as said:
        dataset = ImageDataset(folder, RES, progress=False)
    assert len(dataset) == 20  # the loose ones alone, as before
    assert [str(w.message) for w in said if ".zip" in str(w.message)] == [
        f"left out 2 .zip files inside '{folder}' (batch2/batch2.zip, more_faces.zip): a .zip in the data folder is "
        "not read, its images trained on only where they are unzipped"]
    only = tmp_path / "only"
    (only / "batch").mkdir(parents=True)
    shutil.copy(folder / "more_faces.zip", only / "batch" / "faces.zip")
    with pytest.raises(ValueError, match=r"\(no image files: .*; it holds a \.zip: give that file itself, "
                                         rf"{re.escape(str(only / 'batch' / 'faces.zip'))}\)"):
        ImageDataset(only, RES, progress=False)


def test_a_zip_packed_with_deflate64_says_what_to_do(folder, tmp_path):
    """Windows' 'Compressed folder' packs sets over ~2 GB with Deflate64, which zipfile cannot read: every image was
    skipped with "That compression method is not supported", nothing said of why (thirty-fourth session's audit)."""
    import struct

    archive = bytearray(make_zip(folder, tmp_path / "faces.zip").read_bytes())  # stored: patch each member's method
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = archive.find(signature)
        while at != -1:
            archive[at + offset:at + offset + 2] = struct.pack("<H", 9)
            at = archive.find(signature, at + 4)
    (tmp_path / "faces.zip").write_bytes(bytes(archive))
    with pytest.raises(ValueError, match=r"faces\.zip' is packed with Deflate64 \(Windows' 'Compressed folder' of a "
                                         r"large set\), which Python's zipfile cannot read: extract it and give the "
                                         r"folder of images, or zip it again"):
        ImageDataset(tmp_path / "faces.zip", RES, progress=False)


def test_exact_copies_are_said(folder):
    """The data set unzipped a second time into its folder: every image trained on twice as often, and the copies
    counted towards the minimum, unsaid (thirty-fourth session's audit)."""
    twice = sorted((folder / "sub").glob("img*"))
    (folder / "again").mkdir()
    for path in twice:
        shutil.copy(path, folder / "again" / path.name)
    with pytest.warns(UserWarning) as said:
        dataset = ImageDataset(folder, RES, progress=False)
    copies = [str(w.message) for w in said if "exact copies" in str(w.message)]
    assert copies == [f"{len(twice)} of {dataset.num_images} images in '{folder}' are exact copies of others (e.g. "
                      f"again/{twice[0].name} = sub/{twice[0].name}): each is trained on as often as it has copies; "
                      "remove them for an even data set"]


def test_a_zip_with_backslashed_names_leaves_out_run_and_hidden_folders(tmp_path):
    """Windows' PowerShell 5.1 writes `faces\\old run\\fakes.png`: split at '/' alone, a run folder's fakes grid and a
    hidden folder's thumbnail were trained on as faces, where the same zip with '/' left them out."""
    for sep in ("/", "\\"):
        path = tmp_path / f"faces{'-slash' if sep == '/' else '-backslash'}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for i in range(9):
                archive.writestr(f"faces{sep}{name(i).replace('/', sep)}", _png_bytes(draw(i)))
            archive.writestr(f"faces{sep}old run{sep}training-state-000000004.pt", b"state")
            archive.writestr(f"faces{sep}old run{sep}fakes-000000004.png", _png_bytes(draw(20)))
            archive.writestr(f"faces{sep}.thumbs{sep}0.png", _png_bytes(draw(21)))
        with pytest.warns(UserWarning, match=r"left out 1 fine-tuning run folder inside .*'faces/old run'"):
            dataset = ImageDataset(path, RES, progress=False)
        assert dataset.num_images == 9 and not [n for n in dataset.names if "fakes" in n or "thumbs" in n]


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
