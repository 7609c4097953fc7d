"""`toonlib align | project | toonify` on real photos with tiny models (in-process, to share LPIPS)."""
from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from tiny import keyboard_interrupt, random_lpips, write_photos, write_toonify_models

from toonlib import cli, losses
from toonlib.projection import load_latent


@pytest.fixture(autouse=True)
def offline_lpips(monkeypatch):
    """The product's LPIPS cache pre-filled with a random-trunk LPIPS (no VGG16 download here)."""
    monkeypatch.setitem(losses._LPIPS_CACHE, "cpu", random_lpips())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_toonify_models(root)
    write_photos(root / "photos")
    return root


def test_align_then_project(setup, tmp_path, capsys):
    aligned = tmp_path / "face.png"
    assert cli.main(["align", str(setup / "photos" / "hopper.jpg"), "-o", str(aligned), "--size", "64",
                     "--detector", "dlib"]) == 0
    assert Image.open(aligned).size == (64, 64)
    latent = tmp_path / "w.npz"
    assert cli.main(["project", str(aligned), "--base", str(setup / "base.safetensors"), "--steps", "3", "-o",
                     str(latent),
                     "--image-out", str(tmp_path / "recon.png")]) == 0
    assert load_latent(latent).shape == (1, 8, 16)
    assert Image.open(tmp_path / "recon.png").size == (32, 32)
    assert "final LPIPS" in capsys.readouterr().out
    assert cli.main(["align", str(setup / "photos" / "coffee.png"), "-o", str(tmp_path / "x.png"),
                     "--detector", "dlib"]) == 2
    assert "no face" in capsys.readouterr().err.lower()


def test_align_warns_only_of_the_face_it_writes(setup, tmp_path, capsys):
    """Without --all-faces, align wrote the largest face but aligned every one, and warned that a smaller face it
    did not write was "small ... will look blurry"."""
    photo = Image.open(setup / "photos" / "hopper.jpg")
    small = photo.resize((photo.width * 3 // 5, photo.height * 3 // 5))
    pair = Image.new("RGB", (photo.width + small.width, photo.height), "white")
    pair.paste(photo, (0, 0))
    pair.paste(small, (photo.width, 0))
    pair.save(tmp_path / "pair.png")
    argv = ["align", str(tmp_path / "pair.png"), "-o", str(tmp_path / "a.png"), "--size", "512", "--detector", "dlib"]
    assert cli.main([*argv, "--all-faces"]) == 0
    # the second face, upsampled more than 2x, named with its photo (it named neither; thirty-fourth session)
    said = [line for line in capsys.readouterr().err.splitlines() if " is small" in line]
    assert len(said) == 1 and said[0].startswith(
        f"toonlib align: warning: the face 2 of 2 in '{tmp_path / 'pair.png'}' is small: its crop is ")
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert " is small" not in captured.err and captured.out.startswith(f"wrote {tmp_path / 'a.png'}")


def test_toonify_folder_survives_bad_photos(setup, tmp_path, capsys):
    out = tmp_path / "toons"
    code = cli.main(["toonify", str(setup / "photos"), "-o", str(out), "--base", str(setup / "base.safetensors"),
                     "--toon", str(setup / "toon.safetensors"), "--steps", "2", "--paste-back", "--detector", "dlib"])
    captured = capsys.readouterr()
    assert code == 1  # some photos failed, the others were written
    assert "skipped" in captured.err and "broken.jpg" in captured.err and "coffee.png" in captured.err
    assert "toonified 2 of 4 photos" in captured.out
    for stem in ("astronaut", "hopper"):
        for kind in ("toon", "aligned", "reconstruction"):
            assert Image.open(out / f"{stem}-{kind}.png").size == (32, 32)
        pasted = Image.open(out / f"{stem}-pasted.png")
        original = Image.open(setup / "photos" / ("astronaut.png" if stem == "astronaut" else "hopper.jpg"))
        assert pasted.size == original.size
    assert sorted(p.name for p in (setup / "photos").iterdir()) == ["astronaut.png", "broken.jpg", "coffee.png",
                                                                    "hopper.jpg"]
    # several photos (a shell glob), also after -o: the same toons as from their folder; a bad one skipped, as there
    photos = setup / "photos"
    code = cli.main(["toonify", str(photos / "hopper.jpg"), str(photos / "broken.jpg"), "-o", str(tmp_path / "some"),
                     str(photos / "astronaut.png"), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "2", "--detector", "dlib"])
    captured = capsys.readouterr()
    assert code == 1 and "skipped" in captured.err and "broken.jpg" in captured.err
    assert f"toonified 2 of 3 photos into {tmp_path / 'some'}" in captured.out
    for stem in ("astronaut", "hopper"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "some" / f"{stem}-toon.png")),
                              np.asarray(Image.open(out / f"{stem}-toon.png")))


def test_toonify_refuses_to_overwrite_inputs(setup, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).save(photos / "me.png")
    Image.fromarray(skdata.astronaut()[::-1]).save(photos / "me-toon.png")  # an input named like an output
    before = (photos / "me-toon.png").read_bytes()
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib"]
    code = cli.main(["toonify", str(photos / "me.png"), str(photos / "me-toon.png"), "-o", str(photos), *models])
    assert code == 2 and (f"refusing to overwrite {photos / 'me-toon.png'}: it is an input photo; choose another -o"
                          in capsys.readouterr().err)
    assert (photos / "me-toon.png").read_bytes() == before
    # `toonify in/ -o in/` worked the first time, and the next run on in/ took its toons for photos (toonified in
    # turn, or skipped as faceless): refused at once, saying what to type instead
    empty = tmp_path / "faces"
    empty.mkdir()
    Image.fromarray(skdata.astronaut()).save(empty / "me.png")
    assert cli.main(["toonify", str(empty), "-o", f"{empty}/", *models]) == 2
    assert capsys.readouterr().err == (f"toonlib toonify: error: -o {empty}/ is the photos folder itself, and the next "
                                       "run on it would take its toons for photos: write them to another folder, e.g. "
                                       "-o faces-toons/\n")
    assert [p.name for p in empty.iterdir()] == ["me.png"]


def test_toonify_of_a_folder_whose_photos_all_fail_exits_2(setup, tmp_path, capsys):
    """Status 1 says that some photos failed and the others were written: with none written it was 1 too."""
    photos = tmp_path / "bad"
    photos.mkdir()
    for name in ("coffee.png", "broken.jpg"):
        shutil.copy(setup / "photos" / name, photos / name)
    code = cli.main(["toonify", str(photos), "-o", str(tmp_path / "out"), "--base", str(setup / "base.safetensors"),
                     "--toon", str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "no photo was toonified: all 2 failed (above)\n"
    assert captured.err.count("skipped") == 2


@pytest.mark.parametrize("stop", ["interrupt", "full disk"])
def test_a_folder_run_cut_short_says_which_photos_are_done(setup, tmp_path, capsys, monkeypatch, stop):
    """Ctrl-C (or SIGTERM) said only 'interrupted', and a full disk its one line alone: not which photos were
    toonified, nor that the photo being written had some of its files. Those are now written all or none (forty-first
    session's audit): the photo cut short has none."""
    import errno

    import toonlib.images

    photos = tmp_path / "two"
    photos.mkdir()
    for name in ("astronaut.png", "hopper.jpg"):
        shutil.copy(setup / "photos" / name, photos / name)
    save_image = toonlib.images.save_image

    def cut_at_hoppers_second_picture(image, path):
        if Path(path).name == "hopper-aligned.png":
            raise KeyboardInterrupt if stop == "interrupt" else OSError(errno.ENOSPC, "No space left on device")
        save_image(image, path)

    monkeypatch.setattr(toonlib.images, "save_image", cut_at_hoppers_second_picture)
    out = tmp_path / "toons"
    code = cli.main(["toonify", str(photos), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity"])
    err = capsys.readouterr().err.splitlines()
    before = "the interrupt" if stop == "interrupt" else "the error below"
    assert code == (130 if stop == "interrupt" else 2) and err[-2] == (
        f"toonified 1 of 2 photos into {out} before {before}; {photos / 'hopper.jpg'}'s files were not written")
    assert err[-1] == "toonlib toonify: interrupted" if stop == "interrupt" else (
        err[-1].startswith("toonlib toonify: error: ") and "No space left on device" in err[-1])
    assert sorted(p.name for p in out.iterdir()) == ["astronaut-aligned.png", "astronaut-latent.npz",
                                                     "astronaut-reconstruction.png", "astronaut-toon.png"]


@pytest.mark.parametrize("stop", ["interrupt", "full disk"])
def test_one_photos_files_are_all_replaced_or_none(setup, tmp_path, capsys, monkeypatch, stop):
    """Ctrl-C or a full disk while one photo's files were written left this run's toon, crop and reconstruction
    beside the last run's pasted photo and latent, said only as "interrupted" (or the one file's error); `toonify
    LATENT` then refused its toon as "a toon drawn otherwise" (forty-first session's audit). They are written under
    temporary names and replace the files there once all are written."""
    import errno

    import toonlib.projection

    out = tmp_path / "toons"
    out.mkdir()
    kinds = ("toon", "aligned", "reconstruction", "pasted")
    for kind in kinds:  # the last run's files
        shutil.copy(setup / "photos" / "coffee.png", out / f"hopper-{kind}.png")
    (out / "hopper-latent.npz").write_bytes(b"the last run's latent")
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def cut(w, path):  # the latent is written after the pictures
        raise KeyboardInterrupt if stop == "interrupt" else OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(toonlib.projection, "save_latent", cut)
    code = cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(out), "--base",
                     str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
                     "--paste-back", "--detector", "dlib", "--no-identity"])
    err = capsys.readouterr().err.splitlines()
    assert code == (130 if stop == "interrupt" else 2)
    assert err[-1] == "toonlib toonify: interrupted" if stop == "interrupt" else "No space left on device" in err[-1]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # no temporary file left either


def test_a_folder_run_whose_output_is_closed_says_so(setup, tmp_path, capsys, monkeypatch):
    """`toonlib toonify folder | head -1`: the run stopped at the next photo's report line saying "toonified 0 of 2
    photos ... before the error below; astronaut.png's files may be incomplete": no error came below, and that photo's
    files were all written (thirty-third session's audit). A photo's report comes after its files."""
    import errno
    import io
    import sys

    class ClosedPipe(io.StringIO):  # the reader of stdout gone away
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    photos = tmp_path / "two"
    photos.mkdir()
    for name in ("astronaut.png", "hopper.jpg"):
        shutil.copy(setup / "photos" / name, photos / name)
    out = tmp_path / "toons"
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = cli.main(["toonify", str(photos), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib"])
    assert code == 141 and capsys.readouterr().err.splitlines()[-1] == (
        "toonlib toonify: stopped: its output was closed (the reader of a pipe, such as `| head`, ended); toonified 1 "
        f"of 2 photos into {out}")
    assert sorted(p.name for p in out.iterdir()) == ["astronaut-aligned.png", "astronaut-latent.npz",
                                                     "astronaut-reconstruction.png", "astronaut-toon.png"]


def test_photos_named_as_a_script_or_windows_names_them(setup, tmp_path, capsys, monkeypatch):
    """A quoted `~` (a script's "$PHOTO") was "no photo or folder at ~/..." where -o's was expanded; a pattern the shell
    did not expand (quoted, cmd or PowerShell, subprocess) was looked up as a file name; a folder's .jfif and .jpe
    JPEGs (Chrome and Edge on Windows save web JPEGs as .jfif) were left out unsaid (thirty-third session's audit)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    photos = tmp_path / "my photos"
    photos.mkdir()
    shutil.copy(setup / "photos" / "astronaut.png", photos / "astronaut.png")
    shutil.copy(setup / "photos" / "hopper.jpg", photos / "hopper.jfif")
    (photos / "notes.txt").write_text("not a photo")
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    assert cli.main(["toonify", "~/my photos", "-o", "~/toons/", *models]) == 0
    assert capsys.readouterr().out.startswith(f"toonified 2 of 2 photos into {tmp_path / 'toons'}/")
    assert sorted(p.name for p in (tmp_path / "toons").iterdir() if p.name.endswith("-toon.png")) == [
        "astronaut-toon.png", "hopper-toon.png"]
    assert cli.main(["toonify", "~/my photos/*", "-o", "~/toons/", *models]) == 0  # the two photos, not the notes
    assert capsys.readouterr().out.startswith("toonified 2 of 2 photos")
    assert cli.main(["toonify", "~/my photos/h*", "-o", "~/one.png", *models]) == 0  # one photo: -o an image
    assert (tmp_path / "one.png").is_file() and (tmp_path / "one-aligned.png").is_file()
    assert cli.main(["toonify", "~/my photos/*", "-o", "~/two.png", *models]) == 2  # two photos: said as such
    assert "but the input is several photos: give a folder for -o" in capsys.readouterr().err
    assert cli.main(["toonify", "~/my phot*", "-o", "~/fromfolder/", *models]) == 0  # a folder it matches
    assert capsys.readouterr().out.startswith("toonified 2 of 2 photos")
    assert cli.main(["toonify", "~/my photos/*.jpg", "-o", "~/toons/", *models]) == 2
    assert capsys.readouterr().err == (
        "toonlib toonify: error: no photo or folder matches ~/my photos/*.jpg (a pattern, expanded here as the shell "
        "would: photos are files whose names end in .jpg, .jpeg, .png, .webp, .heic, .heif, .avif, .bmp, .tif, "
        ".tiff, .gif, .jfif, .jpe)\n".replace("~", str(tmp_path)))


def test_a_hidden_photos_files_are_not_hidden(setup, tmp_path, capsys):
    """`toonify .me.jpg -o out/` wrote .me-toon.png and its siblings: out of sight in ls, Finder and Explorer, and
    passed over by a later `toonify out/` (audit). Beside me.jpg the two are told apart as two photos of one name."""
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    Image.fromarray(skdata.astronaut()).save(tmp_path / ".me.jpg")
    assert cli.main(["toonify", str(tmp_path / ".me.jpg"), "-o", str(tmp_path / "out"), *models]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["me-aligned.png", "me-latent.npz",
                                                                      "me-reconstruction.png", "me-toon.png"]
    shutil.copy(tmp_path / ".me.jpg", tmp_path / "me.jpg")
    assert cli.main(["toonify", str(tmp_path / ".me.jpg"), str(tmp_path / "me.jpg"), "-o", str(tmp_path / "two"),
                     *models]) == 2
    assert "2 photos would get the same file names in -o, me-jpg-*.png" in capsys.readouterr().err


def test_a_photo_through_a_pipe_is_read_once(setup, tmp_path, capsys):
    """`cat me.jpg | toonlib toonify /dev/stdin`, `toonify <(curl ...)`: the photo was read to check it, then read
    again by the toonify, which found the pipe empty: "the file is empty (0 bytes)" (audit)."""
    import errno
    import threading

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    done = threading.Event()

    def writer() -> None:  # the photo once; a second reader gets the end of the pipe: an empty file
        with open(fifo, "wb") as pipe:
            Image.fromarray(skdata.astronaut()).save(pipe, format="PNG")
        while not done.wait(0.2):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:  # ENXIO: no reader
                assert exc.errno == errno.ENXIO

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        code = cli.main(["toonify", str(fifo), "-o", str(tmp_path / "out"), "--base", str(setup / "base.safetensors"),
                         "--toon", str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib",
                         "--no-identity"])
    finally:
        done.set()
        thread.join(10)
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "photo-toon.png").is_file()
    # a pipe that holds no image (a sign-in page) is said so: opened again to say what it held, it waited for ever
    page = tmp_path / "page.jpg"
    os.mkfifo(page)
    threading.Thread(target=page.write_bytes, args=(b"<!DOCTYPE html><html>sign in</html>",), daemon=True).start()
    said: list[str] = []

    def read() -> None:
        from toonlib.images import ImageReadError, read_image

        try:
            read_image(page)
        except ImageReadError as exc:
            said.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    assert said == [f"cannot read '{page}' as an image: it is a web page (HTML), not an image: save the image itself "
                    "(right-click it, Save image as)"]


def test_a_photo_through_an_anonymous_pipe_is_toonified(setup, tmp_path, capsys):
    """`cat me.jpg | toonlib toonify /dev/stdin` and `toonify <(curl ...)` name a link to a pipe (`pipe:[N]`, no path):
    it was refused as "a symbolic link to /proc/self/fd/0, which does not exist (a drive not mounted ...)", and
    Python's `toonify("/dev/stdin")` read the pipe to check it, then found it empty (thirty-eighth session's audit)."""
    import threading

    from toonlib.pipeline import toonify

    png = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(png, format="PNG")

    def piped() -> str:  # the photo through a pipe of this process, as the shell gives `<(cat me.png)`
        read_end, write_end = os.pipe()

        def write() -> None:
            with open(write_end, "wb") as pipe:
                pipe.write(png.getvalue())

        threading.Thread(target=write, daemon=True).start()
        return f"/dev/fd/{read_end}"

    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    assert cli.main(["toonify", piped(), "-o", str(tmp_path / "out.png"), *models]) == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    result = toonify(piped(), base=setup / "base.safetensors", toon=setup / "toon.safetensors", steps=1,
                     progress=False, detector="dlib")
    assert result.photo.size == (512, 512)
    # a device that is no pipe is still read first, before the models (the change read /dev/null after them; review)
    from toonlib.images import ImageReadError

    empty = "cannot read '/dev/null' as an image: the file is empty (0 bytes)"
    capsys.readouterr()
    assert cli.main(["toonify", "/dev/null", "-o", str(tmp_path / "null.png"), "--base", "missing.pt"]) == 2
    assert capsys.readouterr().err.startswith(f"toonlib toonify: error: {empty}")
    with pytest.raises(ImageReadError, match=re.escape(empty)):
        toonify("/dev/null", base="missing.pt", progress=False)


def test_an_image_format_this_pillow_cannot_write_is_refused_before_the_work(setup, tmp_path, capsys, monkeypatch):
    """`-o toon.avif` on a Pillow older than 11.3 (which writes no AVIF; pillow>=9.1 is allowed) was refused after the
    projection, and `project --image-out rec.avif` after its latent was written (audit)."""
    from PIL import Image as PILImage

    PILImage.init()
    monkeypatch.setattr(PILImage, "SAVE", {k: v for k, v in PILImage.SAVE.items() if k != "AVIF"})
    photo = setup / "photos" / "astronaut.png"
    models = ["--base", str(setup / "base.safetensors"), "--steps", "1"]
    advice = "Pillow writes no .avif files (Pillow writes AVIF from version 11.3: pip install -U pillow); name it "
    assert cli.main(["toonify", str(photo), "-o", str(tmp_path / "toon.avif"), "--toon",
                     str(setup / "toon.safetensors"), "--detector", "dlib", *models]) == 2
    err = capsys.readouterr().err
    assert advice + f"{tmp_path / 'toon.png'} (or .jpg, .webp, ...)" in err and "step" not in err, err
    assert cli.main(["project", str(photo), "-o", str(tmp_path / "w.npz"), "--image-out", str(tmp_path / "rec.avif"),
                     *models]) == 2
    assert advice in capsys.readouterr().err and not (tmp_path / "w.npz").exists()
    assert cli.main(["align", str(photo), "-o", str(tmp_path / "a.avif"), "--detector", "dlib"]) == 2
    assert advice in capsys.readouterr().err


def test_a_folders_sub_folders_of_photos_are_named(setup, tmp_path, capsys, monkeypatch):
    """`toonify photos/` reads the folder's own photos: an export sorted into 2023/ and 2024/ was "no photos in the
    folder", and beside one photo at the top the others were left out unsaid, the run a success (audit)."""
    nested = tmp_path / "my photos"
    for sub in ("2023", "2024"):
        (nested / sub).mkdir(parents=True)
        shutil.copy(setup / "photos" / "astronaut.png", nested / sub / f"{sub}.png")
    (nested / ".hidden").mkdir()
    shutil.copy(setup / "photos" / "astronaut.png", nested / ".hidden" / "b.png")
    missing = ["--base", str(tmp_path / "no-base.safetensors")]  # the photos are checked first
    assert cli.main(["toonify", str(nested), "-o", str(tmp_path / "out"), *missing]) == 2
    deeper = ("its sub-folders 2023/, 2024/ hold photos, which a folder's toonify leaves out: give them too, e.g. "
              f"'{nested}'/*/")
    err = capsys.readouterr().err
    assert err.startswith(f"toonlib toonify: error: no photos in the folder {nested} (looked for .jpg") and \
        err.endswith(f"; {deeper}\n"), err
    shutil.copy(setup / "photos" / "astronaut.png", nested / "top.png")
    (nested / "lost+found").mkdir()  # a folder that cannot be listed is none of them, and no error
    from toonlib import pipeline

    photos_in = pipeline.photos_in
    monkeypatch.setattr(pipeline, "photos_in", lambda folder: (_ for _ in ()).throw(PermissionError(
        13, "Permission denied", str(folder))) if Path(folder).name == "lost+found" else photos_in(folder))
    assert cli.main(["toonify", str(nested), "-o", str(tmp_path / "out"), *missing]) == 2
    assert capsys.readouterr().err.startswith(f"toonlib toonify: warning: {nested}: {deeper}\n")
    # toonify's own outputs kept beside the photos (-o "my photos/toons/") are no photos to give too: the advice
    # toonified the toons (thirty-seventh session's CLI audit)
    (nested / "toons").mkdir()
    for kind in ("toon", "aligned", "reconstruction", "face2-pasted"):
        shutil.copy(setup / "photos" / "astronaut.png", nested / "toons" / f"top-{kind}.png")
    assert cli.main(["toonify", str(nested), "-o", str(tmp_path / "out"), *missing]) == 2
    assert capsys.readouterr().err.startswith(f"toonlib toonify: warning: {nested}: {deeper}\n")  # not toons/
    shutil.copy(setup / "photos" / "astronaut.png", nested / "toons" / "holiday.png")  # a photo among them
    assert cli.main(["toonify", str(nested), "-o", str(tmp_path / "out"), *missing]) == 2
    assert "2023/, 2024/, toons/ hold photos" in capsys.readouterr().err
    shutil.rmtree(nested / "toons")
    # given too, they are not left out (review): no warning; nor is a folder without photos of its own refused
    (nested / "top.png").unlink()
    assert cli.main(["toonify", str(nested), str(nested / "2023"), f"{nested}/2024/", "-o", str(tmp_path / "out"),
                     *missing]) == 2
    assert capsys.readouterr().err == f"toonlib toonify: error: --base {missing[1]}: no checkpoint at {missing[1]}\n"


def test_a_folder_run_leaves_out_toonifys_outputs_beside_its_photos(setup, tmp_path, capsys):
    """README's `toonify me.jpg -o me-toon.png --paste-back`, in the photos folder: a later `toonify photos/` took its
    four images for photos, "toonified 1 of 5 photos" and exit status 1 with tiny models, toons of toons (minutes
    each) with real ones (forty-first session's audit). They are left out, said in one line."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(setup / "photos" / "hopper.jpg", photos / "me.jpg")
    for kind in ("-toon", "-toon-aligned", "-toon-reconstruction", "-toon-pasted"):
        shutil.copy(setup / "photos" / "hopper.jpg", photos / f"me{kind}.png")
    (photos / "me-toon-latent.npz").write_bytes(b"a latent")  # no image: never taken
    out = tmp_path / "toons"
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    assert cli.main(["toonify", str(photos), "-o", str(out), *models]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == (
        f"toonlib toonify: warning: {photos}: 4 images named as toonify's outputs (me-toon-aligned.png, "
        "me-toon-pasted.png, me-toon-reconstruction.png, ...) are left out; to toonify them anyway, give them by name, "
        f"e.g. {photos / 'me-toon-aligned.png'}")
    assert captured.out.splitlines()[-1].startswith(f"wrote {out / 'me-toon.png'}, ")  # one photo: its files named
    assert sorted(p.name for p in out.iterdir()) == ["me-aligned.png", "me-latent.npz", "me-reconstruction.png",
                                                     "me-toon.png"]
    # named, one is toonified; a folder of nothing else is no folder of photos, said with why
    missing = ["--base", str(tmp_path / "no-base.safetensors")]  # the photos are checked first
    assert cli.main(["toonify", str(photos), str(photos / "me-toon.png"), "-o", str(out), *missing]) == 2
    assert capsys.readouterr().err.startswith(
        f"toonlib toonify: warning: {photos}: 3 images named as toonify's outputs (me-toon-aligned.png, ")
    (photos / "me.jpg").unlink()
    assert cli.main(["toonify", str(photos), "-o", str(out), *missing]) == 2
    assert capsys.readouterr().err.endswith("; 4 images named as toonify's outputs (me-toon-aligned.png, "
                                            "me-toon-pasted.png, me-toon-reconstruction.png, ...) are left out; to "
                                            f"toonify them anyway, give them by name, e.g. "
                                            f"{photos / 'me-toon-aligned.png'}\n")
    # the names toonify gives, faces numbered in a folder and beside a one-photo -o; a photo's own name is none
    from toonlib.commands import _is_toonify_output

    assert all(_is_toonify_output(Path(name)) for name in ("a-face2-toon.png", "me-toon-face2.png",
                                                             "me-toon-face12-pasted.jpg", "a-16px-toon.png"))
    assert not any(_is_toonify_output(Path(name)) for name in ("toon.png", "me.jpg", "cartoon.png", "me-toons.png",
                                                                 "me-face2.png"))


def test_a_dash_for_standard_input_names_dev_stdin(setup, tmp_path, capsys):
    """`toonlib toonify - -o x.png < me.jpg` was "no photo or folder at -" alone (align's and project's "no such
    file"), where many tools read `-` as standard input (forty-first session's audit)."""
    # no toonify command in it, which `align -` was given (forty-third session's audit)
    hint = ("; standard input is given as /dev/stdin, not -: put /dev/stdin where - is (`< me.jpg` still sends the "
            "photo)\n")
    assert cli.main(["toonify", "-", "-o", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == "toonlib toonify: error: no photo or folder at -" + hint
    assert cli.main(["align", "-", "-o", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == "toonlib align: error: cannot read '-' as an image: there is no such file" + hint


def test_project_video_frames_go_to_ffmpeg_as_they_are_made(setup, tmp_path, capsys, monkeypatch):
    """`project --video` kept every frame (target | projection) in memory until the end, 6 MiB each at 1024 px:
    ~3 GB with --video-every 1, an OOM kill at the end of a long run losing the latent too (forty-first session's
    audit). Each frame goes to ffmpeg after its step."""
    import imageio_ffmpeg

    from toonlib import projection

    steps, arrivals = [], []
    learning_rate, write_frames = projection.learning_rate, imageio_ffmpeg.write_frames
    monkeypatch.setattr(projection, "learning_rate", lambda t, *args: (steps.append(t), learning_rate(t, *args))[1])

    class Recorded:
        """ffmpeg's writer, recording how many steps had begun when each frame came."""

        def __init__(self, *args, **kwargs):
            self.writer = write_frames(*args, **kwargs)

        def send(self, frame):
            if frame is not None:
                arrivals.append(len(steps))
            return self.writer.send(frame)

        def close(self):
            self.writer.close()

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", Recorded)
    aligned, video = tmp_path / "face.png", tmp_path / "p.mp4"
    Image.open(setup / "photos" / "astronaut.png").resize((32, 32)).save(aligned)
    assert cli.main(["project", str(aligned), "--base", str(setup / "base.safetensors"), "--steps", "5", "-o",
                     str(tmp_path / "w.npz"), "--video", str(video), "--video-every", "1"]) == 0
    assert arrivals == [1, 2, 3, 4, 5]  # not [5, 5, 5, 5, 5]: all kept until the end
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {video}"
    assert write_frames is not Recorded and imageio_ffmpeg.count_frames_and_secs(str(video))[0] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "p.mp4", "w.npz"]


def test_a_photo_linked_into_a_drive_not_mounted_is_said_and_counted(setup, tmp_path, capsys):
    """Photos that are links into a drive not mounted (`ls` lists them) were "no photo or folder at" alone, "no
    photos in the folder" together, and beside one real photo left out unsaid, the run a success (thirty-seventh
    session's CLI audit)."""
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy(setup / "photos" / "astronaut.png", album / "me.png")
    for name in ("IMG_0001.jpg", "IMG_0002.jpg"):
        (album / name).symlink_to(tmp_path / "usb" / name)
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--detector",
              "dlib", "--steps", "2"]
    gone = f"a symbolic link to {tmp_path / 'usb' / 'IMG_0001.jpg'}, which does not exist (a drive not mounted, a " \
           "folder moved or deleted?)"
    assert cli.main(["toonify", str(album / "IMG_0001.jpg"), "-o", str(tmp_path / "t.png"), *models]) == 2
    assert capsys.readouterr().err == f"toonlib toonify: error: {album / 'IMG_0001.jpg'} is {gone}\n"
    assert cli.main(["toonify", str(album), "-o", str(tmp_path / "toons"), *models]) == 1
    captured = capsys.readouterr()
    assert f"skipped {album / 'IMG_0001.jpg'}: cannot read '{album / 'IMG_0001.jpg'}' as an image: it is {gone}" in \
        captured.err
    assert "toonified 1 of 3 photos" in captured.out + captured.err
    assert sorted(path.name for path in (tmp_path / "toons").glob("*-toon.png")) == ["me-toon.png"]
    # a pattern the shell did not expand takes the links as the folder does (the review: it refused the run)
    assert cli.main(["toonify", f"{album}/*", "-o", str(tmp_path / "toons2"), *models]) == 1
    assert "toonified 1 of 3 photos" in "".join(capsys.readouterr())
    # none readable (the whole album on the drive): said before any model is read (the review: after them)
    (album / "me.png").unlink()
    missing = ["--base", str(tmp_path / "no-base.safetensors")]
    assert cli.main(["toonify", str(album), "-o", str(tmp_path / "toons3"), *missing]) == 2
    assert capsys.readouterr().err == f"toonlib toonify: error: {album / 'IMG_0001.jpg'} is {gone}; so are all 2 " \
                                      "photos given\n"
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")  # links leading round to themselves: no missing drive
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert cli.main(["toonify", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "t.png"), *missing]) == 2
    assert capsys.readouterr().err == (f"toonlib toonify: error: {tmp_path / 'a.jpg'} is a symbolic link to "
                                       f"{tmp_path / 'b.jpg'}, in a loop of symbolic links that leads to no file\n")


def test_each_photos_outputs_are_checked_before_the_work(setup, tmp_path, capsys, monkeypatch):
    """Only the first photo's toon was checked for a write-protected file before the work: the other outputs, and
    every output of the photos after it, were replaced (review). A photo whose output may not be written is skipped
    first, as one whose names are too long is."""
    from toonlib import files

    photos = tmp_path / "two"
    photos.mkdir()
    for name in ("astronaut.png", "hopper.jpg"):
        shutil.copy(setup / "photos" / name, photos / name)
    out = tmp_path / "toons"
    out.mkdir()
    (out / "hopper-aligned.png").write_bytes(b"kept")
    unreplaceable = files._unreplaceable
    monkeypatch.setattr(files, "_unreplaceable", lambda target: "it is write-protected (`chmod u+w` it to allow "
                        "writing it)" if target.name == "hopper-aligned.png" else unreplaceable(target))
    code = cli.main(["toonify", str(photos), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity"])
    err = capsys.readouterr().err
    assert code == 1 and (f"skipped {photos / 'hopper.jpg'}: cannot write {out / 'hopper-aligned.png'}: it is "
                          "write-protected (`chmod u+w` it to allow writing it); name another file") in err, err
    assert (out / "hopper-aligned.png").read_bytes() == b"kept" and (out / "astronaut-toon.png").is_file()
    # a folder of an output's name: found after the projection, the folder run ended there (thirty-eighth session's
    # audit); one photo alone is refused before the work
    (out / "astronaut-latent.npz").unlink()
    (out / "astronaut-latent.npz").mkdir()
    monkeypatch.setattr(files, "_unreplaceable", unreplaceable)
    code = cli.main(["toonify", str(photos), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity"])
    err = capsys.readouterr().err
    assert code == 1 and (f"skipped {photos / 'astronaut.png'}: cannot write {out / 'astronaut-latent.npz'}: it is a "
                          "folder; name a file") in err, err
    assert (out / "hopper-toon.png").is_file()
    (out / "hopper-reconstruction.png").unlink()
    (out / "hopper-reconstruction.png").mkdir()
    assert cli.main(["toonify", str(photos / "hopper.jpg"), "-o", str(out / "hopper.png"), "--base", "missing.pt"]) == 2
    assert capsys.readouterr().err == (f"toonlib toonify: error: cannot write {out / 'hopper-reconstruction.png'}: it "
                                       "is a folder; name a file\n")
    # the pasted photo's name is checked where it is written (review): without --paste-back it is none of the run's
    # files; with --all-faces the one pasted photo of every face (found after the projection)
    (out / "hopper-reconstruction.png").rmdir()
    (out / "astronaut-latent.npz").rmdir()
    (out / "hopper-pasted.png").mkdir()
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    assert cli.main(["toonify", str(photos / "hopper.jpg"), "-o", str(out), *models]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["toonify", str(photos), "-o", str(out), "--all-faces", "--paste-back", *models]) == 1
    assert (f"skipped {photos / 'hopper.jpg'}: cannot write {out / 'hopper-pasted.png'}: it is a folder; name a "
            "file") in capsys.readouterr().err
    assert (out / "astronaut-pasted.png").is_file()


def test_two_photos_never_get_one_name_and_a_photos_folder_is_no_output(setup, tmp_path, capsys):
    """me.jpg and me.JPG in one folder (or me.jpg, me.png and me-jpg.png) were written to the same me-jpg-* files,
    the run saying "toonified 2 of 2"; only two photos of one name given as two arguments were refused. -o as one of
    several inputs' folders was taken (the next run on it took the toons for photos). One photo named two ways (a
    relative and an absolute path) is one photo."""
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    face = Image.fromarray(skdata.astronaut())
    cases = tmp_path / "cases"
    cases.mkdir()
    face.save(cases / "me.jpg")
    face.save(cases / "me.JPG")
    assert cli.main(["toonify", str(cases), "-o", str(tmp_path / "out"), *models]) == 2
    err = capsys.readouterr().err
    assert (f"2 photos would get the same file names in -o, me-jpg-*.png ({cases / 'me.JPG'}, {cases / 'me.jpg'}; "
            "names that differ in case alone are one file on macOS and Windows): rename one, or toonify them into "
            "separate folders (one -o folder each: with one -o, the second one's files would replace the first "
            "one's)") in err or (f"({cases / 'me.jpg'}, {cases / 'me.JPG'};") in err, err
    assert err.rstrip().endswith("would replace the first one's)")  # "with separate commands", into one -o, did
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    face.save(a / "me.jpg"), face.save(b / "me.png"), face.save(b / "me-jpg.png")
    assert cli.main(["toonify", str(a), str(b), "-o", str(tmp_path / "out"), *models]) == 2
    assert "2 photos would get the same file names in -o, me-jpg-*.png" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (b / "me-jpg.png").unlink()
    assert cli.main(["toonify", str(a), str(b), "-o", str(a), *models]) == 2
    assert f"-o {a} is the photos folder itself" in capsys.readouterr().err
    assert sorted(p.name for p in a.iterdir()) == ["me.jpg"]
    assert cli.main(["toonify", str(a / "me.jpg"), os.path.relpath(a / "me.jpg"), "-o", str(tmp_path / "one.png"),
                     *models]) == 0  # one photo: -o names its toon (it was refused as "several photos")
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'one.png'}, ")
    (a / "bad.jpg").write_bytes(b"not an image")  # one photo written two ways is read first, as one photo is
    assert cli.main(["toonify", str(a / "bad.jpg"), os.path.relpath(a / "bad.jpg"), "-o", str(tmp_path / "bad.png"),
                     *models, "--base", str(tmp_path / "no-such-base.safetensors")]) == 2
    assert "cannot read" in capsys.readouterr().err  # not the missing --base: the photo was read before the models
    (a / "bad.jpg").unlink()
    (a / "alias.jpg").symlink_to(a / "me.jpg")  # a link is a photo of its own name, as before
    assert cli.main(["toonify", str(a), "-o", str(tmp_path / "two"), *models]) == 0
    assert sorted(p.name for p in (tmp_path / "two").glob("*-toon.png")) == ["alias-toon.png", "me-toon.png"]


def test_a_photo_whose_toons_name_is_too_long_is_skipped_in_a_folder_run(setup, tmp_path, capsys):
    """One photo named 245 characters long (its -reconstruction.png over the file system's 255 bytes) stopped a
    folder run before any work, where a bad photo is skipped."""
    photos = tmp_path / "photos"
    photos.mkdir()
    long = "a" * 245 + ".jpg"
    shutil.copy(setup / "photos" / "hopper.jpg", photos / long)
    shutil.copy(setup / "photos" / "hopper.jpg", photos / "me.jpg")
    out = tmp_path / "toons"
    assert cli.main(["toonify", str(photos), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity"]) == 1
    captured = capsys.readouterr()
    assert f"skipped {photos / long}: cannot write {out / ('a' * 245)}-" in captured.err
    assert "bytes long, and file names here take 255 at most; it is named after the photo" in captured.err
    assert captured.out.splitlines()[-1] == f"toonified 1 of 2 photos into {out}"
    assert (out / "me-toon.png").is_file()


def test_a_latents_toon_is_named_by_what_draws_it():
    """The toon model where it is not the default (a URL's path's stem: a Drive link's gave "view?usp=sharing", no
    file name on Windows) and the re-blend."""
    import argparse

    from toonlib.commands import _drawn_with

    def named(**given) -> str:
        return _drawn_with(argparse.Namespace(**{"toon": "toonify-blended-tf", "swap_res": None, "level": 0,
                                                 "blend_width": None, "base": None, "toon_network": None, **given}))

    assert named() == "" and named(swap_res=16) == "-16px"
    assert named(toon="https://drive.google.com/file/d/1a2B/view?usp=sharing", swap_res=16) == "-view-16px"
    assert named(toon="runs/my toon/network-snapshot-000000016.safetensors (G)", swap_res=8, level=1,
                 blend_width=0.5) == "-network-snapshot-000000016-G-8px-level1-width0.5"  # its generator too
    # another base or generator: a redraw of one latent with each replaced the one before (CLI audit)
    assert named(base="~/models/ffhq v2.pkl", toon_network="G_ema", swap_res=16) == "-G_ema-on-ffhq_v2-16px"
    # names cut at 40 bytes each: two names of CJK characters passed 255 bytes, "File name too long"
    assert named(toon="漫画" * 20 + ".pkl", base="顔" * 30 + ".pkl") == "-" + "漫画" * 6 + "漫-on-" + "顔" * 13


def test_a_reblended_latent_keeps_the_photos_toon(setup, tmp_path, capsys):
    """The README's way to try another blend, `toonify toons/me-latent.npz -o toons/ --swap-res 16`, replaced the
    photo's own toons/me-toon.png; `-o NAME.png/` and `-o run.v2/` were no folders for a latent, as they are for
    photos."""
    toons = tmp_path / "toons"
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors")]
    assert cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", f"{toons}/", *models, "--steps", "1",
                     "--detector", "dlib", "--no-identity"]) == 0
    toon = (toons / "hopper-toon.png").read_bytes()
    assert cli.main(["toonify", str(toons / "hopper-latent.npz"), "-o", str(toons), *models, "--swap-res", "16"]) == 0
    assert (toons / "hopper-toon.png").read_bytes() == toon
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {toons / 'hopper-toon-on-base-16px-toon.png'}"  # --toon
    assert cli.main(["toonify", str(toons / "hopper-latent.npz"), "-o", str(toons), *models, "--swap-res", "16",
                     "--level", "1", "--blend-width", "0.5"]) == 0  # another blend: another name
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"wrote {toons / 'hopper-toon-on-base-16px-level1-width0.5-toon.png'}"
    for folder in ("toons.png", "run.v2"):
        assert cli.main(["toonify", str(toons / "hopper-latent.npz"), "-o", f"{tmp_path / folder}/", *models[2:]]) == 0
        assert (tmp_path / folder / "hopper-toon-toon.png").is_file()  # its toon model, named
    assert cli.main(["toonify", str(toons / "hopper-latent.npz"), "-o", str(tmp_path / "run.v3"), *models[2:]]) == 2
    assert (f"-o {tmp_path / 'run.v3'}: the toon of a latent is written to an image file") in capsys.readouterr().err


def test_a_latents_toon_without_a_reblend_reads_no_base(setup, tmp_path, capsys, monkeypatch):
    """Without --swap-res the toon file's published blend draws a latent: --base was taken and ignored (the toon
    named `-on-<base>`, pixel for pixel the published blend's), and the default base was downloaded and loaded unused
    (offline: "could not download 'ffhq-1024-tf'"; a blend file refused for an unused base that did not fit it);
    thirty-fourth session's CLI audit."""
    from toonlib import blend, save_network
    from toonlib.checkpoints import load_generator
    from toonlib.images import to_uint8
    from toonlib.projection import render

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "empty-cache"))  # no default base there, and no internet
    toons = tmp_path / "toons"
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors")]
    assert cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", f"{toons}/", *models, "--steps", "1",
                     "--detector", "dlib", "--no-identity"]) == 0
    latent = toons / "hopper-latent.npz"
    capsys.readouterr()
    assert cli.main(["toonify", str(latent), "-o", str(tmp_path / "t.png"), *models]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "toonlib toonify: error: --base goes with --swap-res (a latent's toon reads the base only to re-blend the toon "
        "model; without --swap-res the toon file's published blend draws it); add --swap-res, or leave --base out")
    assert cli.main(["toonify", str(latent), "-o", str(tmp_path / "t.png"), *models[2:]]) == 0
    assert (tmp_path / "t.png").read_bytes() == (toons / "hopper-toon.png").read_bytes()  # the photo's own toon
    blended = save_network(tmp_path / "blend.safetensors", blend(setup / "toon.safetensors",
                                                                setup / "base.safetensors", 16))
    assert cli.main(["toonify", str(latent), "-o", str(tmp_path / "b.png"), "--toon", str(blended)]) == 0  # as it is
    expected = to_uint8(render(load_generator(blended), load_latent(latent))[0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), expected)
    assert not (tmp_path / "empty-cache").exists() or not any((tmp_path / "empty-cache").iterdir())


def test_a_latent_drawn_plainly_keeps_a_toon_drawn_otherwise(setup, tmp_path, capsys, monkeypatch):
    """Without --swap-res or --toon, a latent's toon in a folder takes the photo's own name, `<name>-toon.png`: where
    the photo's toon there was drawn otherwise (`toonify me.jpg -o toons/ --swap-res 16`), it was replaced by the
    published blend's. It is kept now, and the message says how to name the new one; a toon drawn the same way (on
    another device it differs by rounding at most) is replaced, as a re-run replaces it."""
    import torch

    from toonlib.checkpoints import load_generator
    from toonlib.models import MODELS
    from toonlib.projection import save_latent

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TOONLIB_CACHE", str(cache))  # the default toon model, tiny, where the real one is kept
    shutil.copy(setup / "toon.safetensors", cache / MODELS["toonify-blended-tf"].filename)
    shutil.copy(setup / "base.safetensors", cache / MODELS["ffhq-1024-tf"].filename)  # its base, by default
    toons = tmp_path / "toons"
    toons.mkdir()
    base = []  # the default models: a --base is in a latent's toon's name
    G = load_generator(setup / "base.safetensors")
    save_latent(G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)), None),
                toons / "me-latent.npz")
    assert cli.main(["toonify", str(toons / "me-latent.npz"), "-o", str(toons / "me-toon.png"), *base,
                     "--swap-res", "16"]) == 0  # the photo's toon, re-blended at 16 px
    reblended = (toons / "me-toon.png").read_bytes()
    capsys.readouterr()
    assert cli.main(["toonify", str(toons / "me-latent.npz"), "-o", str(toons), *base]) == 2
    assert (toons / "me-toon.png").read_bytes() == reblended
    assert capsys.readouterr().err.strip().splitlines()[-1] == (  # after the tiny models' lineage warning
        f"toonlib toonify: error: {toons / 'me-toon.png'} is there, a toon drawn otherwise (another blend or toon "
        "model, or another latent), and it is kept: draw the latent as it was drawn (its --swap-res, --toon), or "
        f"name this one, e.g. -o {toons / 'me-published-toon.png'}")
    assert cli.main(["toonify", str(toons / "me-latent.npz"), "-o", str(toons / "me-published-toon.png"), *base]) == 0
    published = (toons / "me-published-toon.png").read_bytes()
    pixels = np.asarray(Image.open(toons / "me-published-toon.png")).astype(int)
    for change, kept in ((1, False), (5, True)):  # off by one level (another device's rounding): the same toon
        Image.fromarray(np.clip(pixels + change, 0, 255).astype(np.uint8)).save(toons / "me-toon.png")
        before = (toons / "me-toon.png").read_bytes()
        assert cli.main(["toonify", str(toons / "me-latent.npz"), "-o", str(toons), *base]) == (2 if kept else 0)
        assert (toons / "me-toon.png").read_bytes() == (before if kept else published)
    assert not list(cache.glob("*.part*"))  # nothing downloaded


def test_align_and_project_refuse_to_overwrite_their_photo(setup, tmp_path, capsys):
    """As toonify does: `align me.jpg -o me.jpg` replaced the photo by its 32 px crop, `project --image-out` the
    aligned face by its reconstruction."""
    photo = tmp_path / "me.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    before = photo.read_bytes()
    assert cli.main(["align", str(photo), "-o", str(photo), "--detector", "dlib", "--size", "32"]) == 2
    assert f"refusing to overwrite {photo}: it is an input photo; choose another -o" in capsys.readouterr().err
    assert cli.main(["project", str(photo), "-o", str(tmp_path / "w.npz"), "--image-out", str(photo),
                     "--base", str(setup / "base.safetensors"), "--steps", "1"]) == 2
    assert "it is an input photo; choose another --image-out" in capsys.readouterr().err
    assert photo.read_bytes() == before and sorted(tmp_path.iterdir()) == [photo]


def test_toonify_keeps_photos_of_one_name_apart(setup, tmp_path, capsys):
    """me.jpg and me.png in one folder: the second photo's images replaced the first's (exit status 0)."""
    photos = tmp_path / "in"
    photos.mkdir()
    Image.open(setup / "photos" / "hopper.jpg").save(photos / "me.jpg")
    Image.open(setup / "photos" / "astronaut.png").save(photos / "me.png")
    out = tmp_path / "out"
    assert cli.main(["toonify", str(photos), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"me-{ext}-{kind}" for ext in ("jpg", "png") for kind in
                                                     ("aligned.png", "latent.npz", "reconstruction.png", "toon.png")]


def test_toonify_of_one_photo_shows_the_projection_steps(setup, tmp_path, capsys, monkeypatch):
    """One photo took up to an hour on a CPU with nothing on the screen; now the step bar, ending complete. The hint
    that the encoders take seconds said "minutes" whatever --steps asked; now from `CPU_HINT_STEPS` (100) steps on
    (here made 4, so that the test takes seconds)."""
    from toonlib import commands

    monkeypatch.setattr(commands, "CPU_HINT_STEPS", 4)
    for steps in (3, 4):
        assert cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(tmp_path / str(steps)),
                         "--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"),
                         "--steps", str(steps), "--detector", "dlib", "--no-identity"]) == 0
        err = capsys.readouterr().err
        assert f"{steps}/{steps}" in err
        hint = (f"projecting on the CPU can take minutes a photo at {steps} steps (the bar below counts the steps); "
                "--invert e4e takes seconds")  # how a new user learns of the encoders
        assert (hint in err) == (steps == 4), err
    photos = tmp_path / "folder"  # a folder's bar counts photos
    photos.mkdir()
    Image.open(setup / "photos" / "hopper.jpg").save(photos / "me.jpg")
    Image.open(setup / "photos" / "hopper.jpg").save(photos / "you.jpg")
    assert cli.main(["toonify", str(photos), "-o", str(tmp_path / "toons"), "--base", str(setup / "base.safetensors"),
                     "--toon", str(setup / "toon.safetensors"), "--steps", "4", "--detector", "dlib",
                     "--no-identity"]) == 0
    err = capsys.readouterr().err
    assert "at 4 steps (the bar below counts the photos, and each batch's steps)" in err
    # the bar of photos moves when a batch is done (20-80 minutes for 4 photos on a CPU): it shows the batch's steps
    assert re.search(r"toonify: 100%.* 2/2 \[.*, projection step 4/4\]", err), err


def test_all_faces_numbers_every_face(setup, tmp_path, capsys):
    """--all-faces numbers the faces from 1 (-face1, ..., as the web app does) whether one or several are found, in
    align as in toonify: a script cannot know beforehand how many a photo has."""
    assert cli.main(["align", str(setup / "photos" / "hopper.jpg"), "-o", str(tmp_path / "a.png"), "--size", "32",
                     "--detector", "dlib", "--all-faces"]) == 0
    assert cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(tmp_path / "t"), "--base",
                     str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
                     "--detector", "dlib",
                     "--no-identity", "--all-faces"]) == 0
    assert (tmp_path / "a-face1.png").is_file() and (tmp_path / "t" / "hopper-face1-toon.png").is_file()
    assert not (tmp_path / "a-face0.png").exists()


def test_a_photo_of_several_faces_says_which_was_used(setup, tmp_path, capsys):
    """A group photo's other faces were dropped without a word, `--all-faces` found only in `--help` (thirty-third
    session's audit)."""
    left, right = Image.open(setup / "photos" / "hopper.jpg"), Image.fromarray(skdata.astronaut())
    two = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    two.paste(left)
    two.paste(right, (left.width, 0))
    photo = tmp_path / "two.jpg"
    two.save(photo)
    said = f"warning: 2 faces found in '{photo}': the largest is used; --all-faces takes each\n"
    assert cli.main(["align", str(photo), "-o", str(tmp_path / "a.png"), "--size", "32", "--detector", "dlib"]) == 0
    assert capsys.readouterr().err == f"toonlib align: {said}"
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    assert cli.main(["toonify", str(photo), "-o", str(tmp_path / "t"), *models]) == 0
    assert f"toonlib toonify: {said}" in capsys.readouterr().err
    assert cli.main(["toonify", str(photo), "-o", str(tmp_path / "all"), "--all-faces", *models]) == 0
    assert "faces found" not in capsys.readouterr().err


def test_all_faces_pasted_back_into_one_photo(setup, tmp_path):
    """--all-faces --paste-back wrote -face0-pasted.png, -face1-pasted.png, each with only its own face toonified;
    now one -pasted.png carries every face's toon (as the web app's), the other images stay per face."""
    photo = Image.open(setup / "photos" / "hopper.jpg")
    pair = Image.new("RGB", (photo.width * 2, photo.height))
    pair.paste(photo, (0, 0))
    pair.paste(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (photo.width, 0))
    pair.save(tmp_path / "pair.png")
    out = tmp_path / "toons"
    assert cli.main(["toonify", str(tmp_path / "pair.png"), "-o", str(out), "--base", str(setup / "base.safetensors"),
                     "--toon",
                     str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity",
                     "--all-faces",
                     "--paste-back"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"pair-face{i}-{kind}" for i in (1, 2) for kind in ("aligned.png", "latent.npz", "reconstruction.png",
                                                           "toon.png")] + ["pair-pasted.png"]
    pasted = np.asarray(Image.open(out / "pair-pasted.png")).astype(int)
    changed = (pasted != np.asarray(pair)).any(-1)
    assert changed[:, :photo.width].any() and changed[:, photo.width:].any()  # both faces


def test_toonify_one_photo_to_an_image_path(setup, tmp_path, capsys):
    """`toonify PHOTO -o out.png` writes the toon at out.png and the other images beside it, not a folder."""
    out = tmp_path / "results" / "out.png"
    code = cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(out), "--base",
                     str(setup / "base.safetensors"),
                     "--toon", str(setup / "toon.safetensors"), "--steps", "1", "--paste-back", "--detector", "dlib"])
    assert code == 0
    assert out.is_file() and Image.open(out).size == (32, 32)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out-aligned.png", "out-latent.npz", "out-pasted.png",
                                                            "out-reconstruction.png", "out.png"]
    assert f"wrote {out}" in capsys.readouterr().out


def test_toonify_a_saved_latent_re_blends_it_in_seconds(setup, tmp_path, capsys):
    """Another swap resolution cost the whole projection again (minutes to an hour on a CPU): toonify writes the
    face's latent beside its toon, and `toonify LATENT` renders it with the toon model re-blended as asked. Options
    about the photo are refused, as are latents of another model and outputs that are no image."""
    from toonlib import blend, load_generator
    from toonlib.images import to_pil
    from toonlib.projection import render

    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors")]
    assert cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(tmp_path / "me.png"), *models,
                     "--steps", "2", "--detector", "dlib", "--no-identity"]) == 0
    latent = tmp_path / "me-latent.npz"
    assert f"{latent}" in capsys.readouterr().out  # said among what was written
    w = load_latent(latent)
    assert w.shape == (1, 8, 16)
    base, toon = load_generator(setup / "base.safetensors"), load_generator(setup / "toon.safetensors", which="G")
    toon_only = models[2:]  # without a re-blend no base is read (--base is refused)
    assert cli.main(["toonify", str(latent), "-o", str(tmp_path / "again.png"), *toon_only]) == 0  # as published
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(tmp_path / "me.png")))
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'again.png'}"
    assert cli.main(["toonify", str(latent), "-o", str(tmp_path / "toons"), *models, "--swap-res", "16"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'toons' / 'me-toon-on-base-16px-toon.png'}"
    expected = to_pil(render(blend(toon, base, 16), w)[0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "toons" / "me-toon-on-base-16px-toon.png")),
                          np.asarray(expected))
    # NVIDIA's projected_w.npz of two latents: one toon each
    np.savez(tmp_path / "projected_w.npz", w=np.concatenate([w.numpy(), -w.numpy()]))
    assert cli.main(["toonify", str(tmp_path / "projected_w.npz"), "-o", str(tmp_path / "two.png"), *toon_only]) == 0
    assert (tmp_path / "two-1.png").is_file() and (tmp_path / "two-2.png").is_file()
    # W latents [N, 1, w_dim] (G.mapping(z)[:, :1]): one toon each, repeated to the model's layers (it was refused as
    # "latents of shape [3, 1, 16]")
    np.savez(tmp_path / "w.npz", w=w[0, :3, None].numpy())
    capsys.readouterr()
    assert cli.main(["toonify", str(tmp_path / "w.npz"), "-o", str(tmp_path / "w.png"), *toon_only]) == 0
    assert capsys.readouterr().out.strip() == "wrote " + ", ".join(str(tmp_path / f"w-{i}.png") for i in (1, 2, 3))
    expected = to_pil(render(load_generator(setup / "toon.safetensors"), w[0, :3, None].repeat(1, 8, 1))[2])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "w-3.png")), np.asarray(expected))
    # rosinality's projector in its default W mode ({name: {'latent': [w_dim], ...}}): refused as "pass num_ws"
    import torch

    torch.save({"me.png": {"latent": w[0, 2], "noise": []}}, tmp_path / "rosinality.pt")
    assert cli.main(["toonify", str(tmp_path / "rosinality.pt"), "-o", str(tmp_path / "r.png"), *toon_only]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), np.asarray(expected))
    np.savez(tmp_path / "other.npz", w=np.zeros((1, 10, 16), np.float32))
    for argv, message in [
            ([str(latent), "-o", "x.png", "--paste-back"],
             "--paste-back is about the photo, and .*me-latent.npz is a latent, the photo already inverted: leave "
             "--paste-back out"),
            ([str(latent), "-o", "x.png", "--steps", "5"], "--steps is about the photo"),
            ([str(latent), "-o", "x.png", "--invert", "e4e"], "--invert is about the photo"),
            ([str(latent), "-o", "x.png", "--detector", "dlib"], "--detector is about the photo"),  # were ignored
            ([str(latent), "-o", "x.png", "--no-identity"], "--no-identity is about the photo"),
            ([str(latent), "-o", "x.png", "--seed", "0"], "--seed is about the photo"),  # 1 was refused, 0 taken
            ([str(latent), "-o", str(tmp_path / "x.npz")], r"the toon of a latent is written to an image file .* name "
                                                           r"it .*x\.png, or give a folder"),
            ([str(tmp_path / "other.npz"), "-o", "x.png"], r"holds latents of shape \[1, 10, 16\], and the toon model "
                                                           r".* takes \[N, 8, 16\]: they belong to another model"),
            ([str(setup / "photos" / "hopper.jpg").replace(".jpg", ".npz"), "-o", "x.png"],
             "no latent file at .*hopper.npz")]:
        assert cli.main(["toonify", *argv, *toon_only]) == 2
        assert re.search(message, capsys.readouterr().err), message


def test_toonify_one_photo_without_a_face_exits_2(setup, tmp_path, capsys):
    """Nothing written: the photo is unusable, as `align` says of it (exit status 1 means some photos of a folder
    failed and the others were written)."""
    code = cli.main(["toonify", str(setup / "photos" / "coffee.png"), "-o", str(tmp_path / "x.png"),
                     "--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps",
                     "1",
                     "--detector", "dlib"])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"toonlib toonify: error: no face was found in '{setup}/photos/coffee.png'; use a larger, frontal, well-lit "
        "photo in which the face is at least ~100 px wide, the head upright")
    assert not any(tmp_path.iterdir())


def test_every_output_that_replaces_a_file_says_so(setup, tmp_path, capsys):
    """Only `blend -o` and `convert` said "(it replaced the file that was there)": `align -o`, `blend --grid`,
    `project -o / --image-out` and toonify's files replaced a photo, a grid or an hour's latent without a word (in
    one `blend` run the -o line said it and the --grid line did not). A file written new says nothing."""
    photo = str(setup / "photos" / "hopper.jpg")
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors")]
    said = "(it replaced the file that was there)"
    aligned = tmp_path / "face.png"
    runs = {"align": ["align", photo, "-o", str(aligned), "--size", "32", "--detector", "dlib"],
            "project": ["project", str(aligned), "--base", str(setup / "base.safetensors"), "--steps", "1", "-o",
                        str(tmp_path / "w.npz"), "--image-out", str(tmp_path / "recon.png")],
            "blend": ["blend", *models, "--swap-res", "8", "-o", str(tmp_path / "b.safetensors"), "--grid",
                      str(tmp_path / "grid.png"), "--seeds", "0,1"],
            "toonify": ["toonify", photo, "-o", str(tmp_path / "toons") + "/", *models, "--steps", "1", "--detector",
                        "dlib"],
            "toonify folder": ["toonify", str(tmp_path / "photos"), "-o", str(tmp_path / "folder"), *models, "--steps",
                               "1", "--detector", "dlib"]}
    (tmp_path / "photos").mkdir()
    shutil.copy(photo, tmp_path / "photos" / "a.jpg")
    shutil.copy(photo, tmp_path / "photos" / "b.jpg")
    for name, argv in runs.items():
        assert cli.main(argv) == 0, name
        wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("wrote", "toonified"))]
        assert wrote and not any("replaced" in line for line in wrote), (name, wrote)
        assert cli.main(argv) == 0, name
        wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("wrote", "toonified"))]
        if name == "toonify":  # toon, aligned face, reconstruction, latent
            files = ", ".join(str(tmp_path / "toons" / f"hopper-{kind}")
                              for kind in ("toon.png", "aligned.png", "reconstruction.png", "latent.npz"))
            assert wrote == [f"wrote {files} (they replaced 4 files that were there)"]
        elif name == "toonify folder":
            assert wrote == [f"toonified 2 of 2 photos into {tmp_path / 'folder'} (they replaced 8 files that were "
                             "there)"]
        else:
            assert len(wrote) == 2 if name != "align" else 1, (name, wrote)
            assert all(line.endswith(said) for line in wrote), (name, wrote)
    (tmp_path / "toons" / "hopper-aligned.png").unlink()
    (tmp_path / "toons" / "hopper-latent.npz").unlink()
    assert cli.main(runs["toonify"]) == 0  # which of the files were there: "it replaced the file" of four said none
    assert capsys.readouterr().out.splitlines()[-1].endswith(" (2 of the 4 files replaced files that were there)")
    from toonlib.files import replacing_note

    assert replacing_note(1, 8) == " (1 of the 8 files replaced a file that was there)"  # a folder's: files, not photos


def test_toonify_with_dlib_not_installed_says_so_before_any_model(setup, tmp_path, capsys, monkeypatch):
    """`--detector dlib` without dlib was said after the models (and LPIPS' VGG16) had downloaded and loaded, where
    `toonlib align` says it at once (forty-second session's audit)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "dlib"
                        else find_spec(name, *args))
    monkeypatch.setattr("toonlib.commands._fetch_toonify_models", lambda *args, **kwargs: pytest.fail("models first"))
    code = cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(tmp_path / "toon.png"),
                     "--detector", "dlib"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "dlib is not installed (no module 'dlib'): `pip install \"toonlib[dlib]\"`" in err, err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


def test_toonify_writes_nothing_through_a_link_onto_its_input(setup, tmp_path, capsys):
    """`-latent.npz` linked to the photo replaced the photo with a zip, exit 0 (the images were refused), warning of
    a temporary file's name; a latent's toon linked to the latent replaced the latent (forty-third session's audit)."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir(), out.mkdir()
    shutil.copy(setup / "photos" / "hopper.jpg", photos / "me.jpg")
    before = (photos / "me.jpg").read_bytes()
    (out / "me-latent.npz").symlink_to(photos / "me.jpg")
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors")]
    argv = ["toonify", str(photos / "me.jpg"), "-o", f"{out}/", *models, "--steps", "1", "--detector", "dlib",
            "--no-identity"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (f"toonlib toonify: error: refusing to overwrite {out / 'me-latent.npz'}: it is "
                                       "an input photo; choose another -o\n")
    assert (photos / "me.jpg").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["me-latent.npz"]
    # a link to another file is written through, as documented, without a warning naming a temporary file
    (out / "me-latent.npz").unlink()
    (out / "me-latent.npz").symlink_to(tmp_path / "latent.bin")
    assert cli.main(argv) == 0
    assert ".tmp" not in capsys.readouterr().err  # "wrote latents, an .npz file, to '.../.latent.bin.1c6d.tmp/...'"
    assert load_latent(out / "me-latent.npz").shape == (1, 8, 16)
    # a latent's toon through a link to that latent
    latent = tmp_path / "lat.npz"
    np.savez(latent, w=np.zeros((1, 8, 16), np.float32))
    (tmp_path / "toon.png").symlink_to(latent)
    assert cli.main(["toonify", str(latent), "-o", str(tmp_path / "toon.png"), models[2], models[3]]) == 2
    assert capsys.readouterr().err == (f"toonlib toonify: error: refusing to overwrite {tmp_path / 'toon.png'}: it is "
                                       "the input latent; choose another -o\n")
    assert load_latent(latent).shape == (1, 8, 16)


def test_toonifys_files_written_through_links_are_named_as_the_links(setup, tmp_path, capsys):
    """Each file was staged under its link's target's name: `-toon.png` linked to `toon.dat` was refused as "Pillow
    writes no .dat files" of `.toon.dat.<random>.tmp/toon.dat`, and `-latent.npz` linked to `latent.dat` warned of
    that temporary name, which a warnings filter hid (forty-fourth session's review). The names the user gave say the
    formats: a PNG and an .npz, written through the links, which stay."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir(), out.mkdir()
    shutil.copy(setup / "photos" / "hopper.jpg", photos / "me.jpg")
    (out / "me-toon.png").symlink_to(tmp_path / "toon.dat")
    (out / "me-latent.npz").symlink_to(tmp_path / "latent.dat")
    assert cli.main(["toonify", str(photos / "me.jpg"), "-o", f"{out}/", "--base", str(setup / "base.safetensors"),
                     "--toon", str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib",
                     "--no-identity"]) == 0
    err = capsys.readouterr().err
    assert ".tmp" not in err and "wrote latents, an .npz file" not in err, err
    assert (out / "me-toon.png").is_symlink() and (out / "me-latent.npz").is_symlink()
    with Image.open(tmp_path / "toon.dat") as toon:
        assert toon.format == "PNG"
    assert load_latent(tmp_path / "latent.dat").shape == (1, 8, 16)


def test_toonify_refuses_a_latent_named_over_an_image_naming_it(setup, tmp_path, capsys):
    """`-latent.npz` linked to an image that is not an input photo was refused naming the staged temporary file
    (`.other.png.<random>.tmp/other.png`, "name it 'other.npz'"); one that is an image was replaced, the check seeing
    the new temporary file (forty-fourth session's review). Both are refused by the user's name before the work,
    nothing written."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir(), out.mkdir()
    shutil.copy(setup / "photos" / "hopper.jpg", photos / "me.jpg")
    other = tmp_path / "other.png"
    Image.new("RGB", (8, 8), "red").save(other)
    before = other.read_bytes()
    argv = ["toonify", str(photos / "me.jpg"), "-o", f"{out}/", "--base", str(setup / "base.safetensors"), "--toon",
            str(setup / "toon.safetensors"), "--steps", "1", "--detector", "dlib", "--no-identity"]
    (out / "me-latent.npz").symlink_to(other)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"toonlib toonify: error: toonify writes latents, and '{out / 'me-latent.npz'}' links to "
                        f"{os.path.realpath(other)}, a PNG image: nothing was written; give another name\n"), err
    assert ".tmp" not in err, err
    assert other.read_bytes() == before and [p.name for p in out.iterdir()] == ["me-latent.npz"]
    assert (out / "me-latent.npz").is_symlink()
    (out / "me-latent.npz").unlink()
    shutil.copy(other, out / "me-latent.npz")  # an image of that name itself
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.endswith(f"toonlib toonify: error: toonify writes latents, and "
                                            f"'{out / 'me-latent.npz'}' is a PNG image: nothing was written; give "
                                            "another name\n")
    assert (out / "me-latent.npz").read_bytes() == before and [p.name for p in out.iterdir()] == ["me-latent.npz"]


def test_a_folder_run_leaves_out_the_face_toons_of_an_image_output(setup, tmp_path, capsys):
    """`toonify group.jpg -o group-toons.png --all-faces` in the photos folder writes each face's toon as
    `group-toons-face1.png`, which names no kind: the next run on the folder took those toons for photos (forty-third
    session's audit). A photo of that name with no latent beside it stays a photo."""
    from toonlib.commands import _is_toonify_output

    photo = Image.open(setup / "photos" / "hopper.jpg")
    pair = Image.new("RGB", (photo.width * 2, photo.height))
    pair.paste(photo, (0, 0))
    pair.paste(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (photo.width, 0))
    album = tmp_path / "album"
    album.mkdir()
    pair.save(album / "group.jpg")
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    assert cli.main(["toonify", str(album / "group.jpg"), "-o", str(album / "group-toons.png"), "--all-faces",
                     *models]) == 0
    assert (album / "group-toons-face2.png").is_file()
    capsys.readouterr()
    assert cli.main(["toonify", str(album), "-o", str(tmp_path / "out"), *models]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"toonlib toonify: warning: {album}: 6 images named as toonify's outputs "
                                   "(group-toons-face1-aligned.png, group-toons-face1-reconstruction.png, "
                                   "group-toons-face1.png, ...) are left out")
    assert captured.out.startswith(f"wrote {tmp_path / 'out' / 'group-toon.png'}, ")  # one photo: the group's
    assert not _is_toonify_output(tmp_path / "me-face2.png")  # no latent beside it


def test_the_replaced_files_note_counts_files_written_meanwhile(setup, tmp_path, capsys, monkeypatch):
    """Whether a file of toonify's replaced one was asked when it was staged, not at its rename: a concurrent run of
    the same photos that wrote all of them meanwhile made the note understate, "(2 of the 10 files replaced ...)" of
    10 replaced (forty-third session's audit)."""
    import toonlib.projection

    out = tmp_path / "toons"
    save_latent = toonlib.projection.save_latent

    def another_run_meanwhile(w, path):  # the latent is staged last: the other run's files land before the renames
        save_latent(w, path)
        for name in ("hopper-toon.png", "hopper-aligned.png", "hopper-reconstruction.png", "hopper-latent.npz"):
            shutil.copy(setup / "photos" / "coffee.png", out / name)

    monkeypatch.setattr(toonlib.projection, "save_latent", another_run_meanwhile)
    assert cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", f"{out}/", "--base",
                     str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
                     "--detector", "dlib", "--no-identity"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(" (they replaced 4 files that were there)")
    assert Image.open(out / "hopper-toon.png").size == (32, 32)  # this run's, not the other's


def test_the_case_remark_of_a_name_clash_only_where_case_is_the_cause(setup, tmp_path, capsys):
    """Two photos of one name in two folders were told "names that differ in case alone are one file on macOS and
    Windows", a reason that was not theirs (forty-third session's audit); me.jpg and me.JPG still are."""
    face = Image.fromarray(skdata.astronaut())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    face.save(a / "x.jpg"), face.save(b / "x.jpg")
    models = ["--base", str(tmp_path / "no-base.safetensors")]  # refused before any model
    assert cli.main(["toonify", str(a / "x.jpg"), str(b / "x.jpg"), "-o", str(tmp_path / "out"), *models]) == 2
    assert capsys.readouterr().err == (
        f"toonlib toonify: error: 2 photos would get the same file names in -o, x-jpg-*.png ({a / 'x.jpg'}, "
        f"{b / 'x.jpg'}): rename one, or toonify them into separate folders (one -o folder each: with one -o, the "
        "second one's files would replace the first one's)\n")
    face.save(b / "X.jpg")
    assert cli.main(["toonify", str(a / "x.jpg"), str(b / "X.jpg"), "-o", str(tmp_path / "out"), *models]) == 2
    assert f"({a / 'x.jpg'}, {b / 'X.jpg'}; names that differ in case alone are one file on macOS and Windows): " \
           in capsys.readouterr().err


def test_a_seed_python_takes_makes_the_same_latent_on_the_command_line(setup, tmp_path, capsys):
    """--seed took 0 to 2**32 - 1 and Python's seed= -2**63 to 2**64 - 1: a latent made in Python with seed=2**40 or
    seed=-5 could not be made again with `toonlib toonify --seed` (forty-third session's audit)."""
    from toonlib import Toonifier

    toonifier = Toonifier(str(setup / "base.safetensors"), str(setup / "toon.safetensors"), detector="dlib")
    photo = setup / "photos" / "hopper.jpg"
    for seed in (2**40, -5):
        out = tmp_path / f"seed{seed}.png"
        assert cli.main(["toonify", str(photo), "-o", str(out), "--base", str(setup / "base.safetensors"), "--toon",
                         str(setup / "toon.safetensors"), "--steps", "2", "--detector", "dlib", "--no-identity",
                         "--seed", str(seed)]) == 0
        assert np.array_equal(load_latent(out.with_name(f"seed{seed}-latent.npz")).numpy(),
                              toonifier(photo, steps=2, seed=seed, progress=False).w.numpy())
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        cli.main(["project", str(photo), "-o", str(tmp_path / "w.npz"), "--seed", str(2**64)])
    assert exited.value.code == 2 and capsys.readouterr().err.endswith(
        f"argument --seed: must be a whole number from -2**63 to 2**64 - 1 (what torch's random generator takes), got "
        f"{2**64}\n")


def _two_faces(setup, path: Path) -> Path:
    """A photo of two faces, the larger first (hopper, then a smaller copy of her), small enough to be quick."""
    photo = Image.open(setup / "photos" / "hopper.jpg")
    small = photo.resize((photo.width * 3 // 5, photo.height * 3 // 5))
    pair = Image.new("RGB", (photo.width + small.width, photo.height), "white")
    pair.paste(photo, (0, 0))
    pair.paste(small, (photo.width, 0))
    pair.save(path)
    return path


def test_face_n_is_the_face_all_faces_numbers_n(setup, tmp_path, capsys):
    """`--face N` takes the face --all-faces writes as -faceN (the command line took the largest or every face; one
    other face was the Python API's and the web app's alone; forty-fourth session): the same toon, its files named
    as --all-faces names them in a folder (runs for two faces never overwrite each other), -o's image name as
    given, its pasted photo that face's, and its latent re-blends."""
    photo = _two_faces(setup, tmp_path / "pair.png")
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "2",
              "--detector", "dlib", "--no-identity", "--seed", "3"]  # 2 steps: the first leaves the start unmoved
    assert cli.main(["toonify", str(photo), "-o", str(tmp_path / "all"), "--all-faces", *models]) == 0
    assert cli.main(["toonify", str(photo), "-o", str(tmp_path / "one"), "--face", "2", "--paste-back", *models]) == 0
    assert "faces found" not in capsys.readouterr().err  # the face asked for: no "the largest is used"
    kinds = ("aligned.png", "latent.npz", "pasted.png", "reconstruction.png", "toon.png")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [f"pair-face2-{kind}" for kind in kinds]
    toon = (tmp_path / "one" / "pair-face2-toon.png").read_bytes()
    assert toon == (tmp_path / "all" / "pair-face2-toon.png").read_bytes()
    latent = load_latent(tmp_path / "one" / "pair-face2-latent.npz")
    assert np.array_equal(latent, load_latent(tmp_path / "all" / "pair-face2-latent.npz"))
    assert not np.array_equal(latent, load_latent(tmp_path / "all" / "pair-face1-latent.npz"))  # not the largest's
    assert ((tmp_path / "one" / "pair-face2-aligned.png").read_bytes()
            == (tmp_path / "all" / "pair-face2-aligned.png").read_bytes()
            != (tmp_path / "all" / "pair-face1-aligned.png").read_bytes())
    pasted = np.asarray(Image.open(tmp_path / "one" / "pair-face2-pasted.png")).astype(int)
    changed = (pasted != np.asarray(Image.open(photo))).any(-1)
    width = Image.open(setup / "photos" / "hopper.jpg").width
    assert changed[:, width:].any() and not changed[:, :width].any()  # the second face's toon alone
    # one photo, -o an image: that file, the others beside it
    assert cli.main(["toonify", str(photo), "-o", str(tmp_path / "me.png"), "--face", "2", *models]) == 0
    assert (tmp_path / "me.png").read_bytes() == toon
    assert (tmp_path / "me-latent.npz").is_file() and not (tmp_path / "me-face2.png").exists()
    assert cli.main(["toonify", str(tmp_path / "one" / "pair-face2-latent.npz"), "-o", str(tmp_path / "re.png"),
                     "--toon", str(setup / "toon.safetensors"), "--base", str(setup / "base.safetensors"),
                     "--swap-res", "8"]) == 0
    assert (tmp_path / "re.png").is_file()
    # align: the same face's crop, at -o as given
    argv = ["align", str(photo), "--size", "32", "--detector", "dlib"]
    assert cli.main([*argv, "-o", str(tmp_path / "a.png"), "--all-faces"]) == 0
    assert cli.main([*argv, "-o", str(tmp_path / "b.png"), "--face", "2"]) == 0
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "a-face2.png").read_bytes()
    assert "faces found" not in capsys.readouterr().err


def test_face_beyond_the_faces_of_a_photo(setup, tmp_path, capsys):
    """`--face 3` of a two-face photo: one line saying how many faces were found, exit status 2 as a photo without a
    face, nothing written; in a folder that photo is skipped and counted, the others toonified (exit status 1)."""
    photo = _two_faces(setup, tmp_path / "pair.png")
    out = tmp_path / "out"
    models = ["--base", str(setup / "base.safetensors"), "--toon", str(setup / "toon.safetensors"), "--steps", "1",
              "--detector", "dlib", "--no-identity"]
    said = (f"{photo}: --face 3 asks for a face beyond the 2 faces found (--face 1 is the largest; --all-faces takes "
            "each)")
    for argv in (["align", str(photo), "-o", str(out / "a.png"), "--size", "32", "--detector", "dlib"],
                 ["toonify", str(photo), "-o", str(out / "t.png"), *models]):
        capsys.readouterr()
        assert cli.main([*argv, "--face", "3"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"toonlib {argv[0]}: error: {said}"
        assert not out.exists()
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy(photo, album / "pair.png")
    shutil.copy(setup / "photos" / "hopper.jpg", album / "hopper.jpg")
    assert cli.main(["toonify", str(album), "-o", str(out), "--face", "2", *models]) == 1
    captured = capsys.readouterr()
    assert (f"skipped {album / 'hopper.jpg'}: --face 2 asks for a face beyond the 1 face found (--face 1 is the "
            "largest; --all-faces takes each)") in captured.err
    assert f"toonified 1 of 2 photos into {out}" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        f"pair-face2-{kind}" for kind in ("aligned.png", "latent.npz", "reconstruction.png", "toon.png")]
    # a latent has no faces to choose from
    assert cli.main(["toonify", str(out / "pair-face2-latent.npz"), "-o", str(tmp_path / "re.png"), "--face",
                     "1"]) == 2
    assert "--face is about the photo" in capsys.readouterr().err


def test_toonify_of_a_latent_file_that_holds_no_latents_or_no_numbers_exits_2(setup, tmp_path, capsys):
    """A latent file of no latents (an export of an empty selection) failed at "IndexError: list index out of range",
    a traceback and exit status 1; an object array at numpy's words, no file named; latents of a model of the same
    size and another w_dim were told to go to "the toon model of that model's size" (forty-fifth session's audit)."""
    toon_only = ["--toon", str(setup / "toon.safetensors")]
    empty, objects, wide = tmp_path / "empty-latent.npz", tmp_path / "objects.npz", tmp_path / "wide.npz"
    np.savez(empty, w=np.zeros((0, 8, 16), np.float32))
    np.savez(objects, w=np.array([None], dtype=object))
    np.savez(wide, w=np.zeros((1, 8, 32), np.float32))
    for latent, said in (
            (empty, f"{empty} holds no latents (shape [0, 8, 16]): nothing to draw from it; toonify or project the "
                    "photos again"),
            (objects, f"{objects}: its 'w' is not an array of real numbers (it holds Python objects), not latents: a "
                      "latent file holds a float array [N, num_ws, w_dim] (np.savez(path, w=latents))"),
            (wide, f"{wide} holds latents of shape [1, 8, 32], and the toon model ({toon_only[1]}, 32 px) takes [N, "
                   "8, 16]: they belong to another model (they are 32 values wide, where this model's latents are 16 "
                   "(its w_dim)); toonify them with a toon model fine-tuned from the base they were projected into, "
                   "or toonify the photo again (W latents are read as [N, 1, 16])")):
        for output in (tmp_path / "toons", tmp_path / "toon.png"):
            assert cli.main(["toonify", str(latent), "-o", str(output), *toon_only]) == 2
            err = capsys.readouterr().err
            assert err.splitlines()[-1] == f"toonlib toonify: error: {said}" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-latent.npz", "objects.npz", "wide.npz"]


def test_toonify_of_many_latents_draws_and_writes_a_few_at_a_time(setup, tmp_path, capsys, monkeypatch):
    """`toonify LATENTS` drew every latent of the file at once, ~0.5 GB each at 1024 px (e4e's latents.pt holds one
    per photo of a test set, often hundreds), and wrote no toon before the last was drawn (forty-fifth session's
    audit). A few are drawn, then written; the toons are the one batch's, named as before, and the bar ends full."""
    import torch

    from toonlib import images, load_generator, projection
    from toonlib.images import to_pil

    G = load_generator(setup / "toon.safetensors")  # its G_ema, the published blend: what draws without --swap-res
    w = G.mapping(torch.randn([10, G.z_dim], generator=torch.Generator().manual_seed(3)), None)
    np.savez(tmp_path / "many-latent.npz", w=w.numpy())
    events, synthesize, save_image = [], projection._synthesize, images.save_image
    monkeypatch.setattr(projection, "_synthesize",
                        lambda G, ws, noise: events.append(f"draw {len(ws)}") or synthesize(G, ws, noise))
    monkeypatch.setattr(images, "save_image", lambda image, path: events.append("save") or save_image(image, path))
    out = tmp_path / "toons"
    assert cli.main(["toonify", str(tmp_path / "many-latent.npz"), "-o", str(out), "--toon",
                     str(setup / "toon.safetensors")]) == 0
    assert events == ["draw 4", *["save"] * 4, "draw 4", *["save"] * 4, "draw 2", "save", "save"]
    captured = capsys.readouterr()
    targets = [out / f"many-toon-{i}-toon.png" for i in range(1, 11)]
    assert captured.out.strip() == "wrote " + ", ".join(map(str, targets))
    assert re.search(r"toonify: 100%.* 10/10 ", captured.err.replace("\r", "\n").strip().splitlines()[-1])
    with torch.no_grad():
        expected = to_pil(G.synthesis(w, noise_mode="const"))  # one batch
    for target, toon in zip(targets, expected):
        assert np.array_equal(np.asarray(Image.open(target)), np.asarray(toon))


def test_project_writes_its_latent_picture_and_video_all_or_none(setup, tmp_path, capsys, monkeypatch):
    """`project -o LAT.npz --image-out IMG.png` replaced the latent, then rendered and wrote the picture: a Ctrl-C
    meanwhile left this run's latent beside the last run's picture (forty-fifth session's file-safety audit)."""
    from toonlib import images

    aligned = tmp_path / "face.png"
    Image.open(setup / "photos" / "astronaut.png").resize((32, 32)).save(aligned)
    outputs = [tmp_path / name for name in ("w.npz", "img.png", "p.mp4")]
    argv = ["project", str(aligned), "--base", str(setup / "base.safetensors"), "-o", str(outputs[0]),
            "--image-out", str(outputs[1]), "--video", str(outputs[2]), "--video-every", "1"]
    assert cli.main([*argv, "--steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"wrote {path}" for path in outputs]
    before = [path.read_bytes() for path in outputs]
    save_image = images.save_image
    monkeypatch.setattr(images, "save_image", lambda image, path: keyboard_interrupt())
    assert cli.main([*argv, "--steps", "3"]) == 130
    assert [path.read_bytes() for path in outputs] == before  # the latent too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "img.png", "p.mp4", "w.npz"]
    monkeypatch.setattr(images, "save_image", save_image)
    assert cli.main([*argv, "--steps", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r" \(final LPIPS .*? after 3 steps\)", "", line) for line in lines] == [
        f"wrote {path} (it replaced the file that was there)" for path in outputs]
    assert all(path.read_bytes() != old for path, old in zip(outputs[:2], before))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "img.png", "p.mp4", "w.npz"]
