"""Whatever a person drops in: a clean upright RGB picture, or one clear sentence."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from studio import images
from studio.errors import BadImage


def save(tmp_path, image: Image.Image, name: str, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_exif_rotated_photo_is_used_upright(tmp_path):
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(tmp_path, wide, "rotated.jpg", exif=exif)
    assert images.load_image(path).size == (40, 80)


def test_transparent_and_palette_images_are_flattened_on_white(tmp_path):
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = images.load_image(save(tmp_path, rgba, "clear.png"))
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 255, 255)
    pal = Image.new("RGB", (32, 32), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert images.load_image(save(tmp_path, pal, "pal.png")).getpixel((0, 0)) == (10, 200, 30)


def test_cmyk_and_16_bit_images_become_rgb(tmp_path):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red in CMYK
    r, g, b = images.load_image(save(tmp_path, cmyk, "cmyk.jpg")).getpixel((3, 3))
    assert r > 200 and g < 60 and b < 60
    deep = Image.fromarray(np.full((32, 32), 65535, np.uint16))
    assert images.load_image(save(tmp_path, deep, "deep.png")).getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((0, 0, 255), (255, 0, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    r, g, b = images.load_image(path).getpixel((1, 1))
    assert b > 200 and r < 50


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "The uploaded file is empty. Please choose a photo (PNG, JPEG or WebP)."),
        (b"hello, this is text",
         "The uploaded file is not an image this studio can read. Please use PNG, JPEG or WebP."),
    ],
)
def test_unusable_files_get_one_sentence(tmp_path, content, message):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(BadImage) as info:
        images.load_image(path)
    assert str(info.value) == message


def test_truncated_file_is_reported(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 50).convert("RGB").save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImage) as info:
        images.load_image(path)
    assert str(info.value).startswith("The image file is damaged or incomplete")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = Image.new("1", (20000, 20000))  # 400 megapixels, a few kB on disk: PIL's own limit trips
    path = save(tmp_path, bomb, "bomb.png")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(BadImage) as info:
        images.load_image(path)
    assert str(info.value) == (
        "The image (400 megapixels) is too large to process safely (limit 40 megapixels). Please use a smaller image."
    )
    big = save(tmp_path, Image.new("1", (9000, 5000)), "big.png")  # 45 MP: under PIL's limit, over ours
    with pytest.raises(BadImage) as info:
        images.load_image(big)
    assert str(info.value) == (
        "The image is 9000x5000 pixels, which is too large to process safely (limit 40 megapixels). "
        "Please use a smaller image."
    )


def test_tiny_image_is_refused(tmp_path):
    with pytest.raises(BadImage, match="only 8x8 pixels; each side needs at least 16 pixels"):
        images.load_image(save(tmp_path, Image.new("RGB", (8, 8)), "tiny.png"))


@pytest.mark.parametrize(
    "size, box, expected",
    [((451, 300), (1024, 576), (832, 576)), ((300, 451), (1024, 576), (320, 576)),
     ((5000, 100), (1024, 576), (1024, 64))],
)
def test_fit_size_keeps_aspect_in_multiples_of_64(size, box, expected):
    assert images.fit_size(size, box) == expected


def test_crop_fills_the_frame_exactly():
    assert images.frame(Image.new("RGB", (451, 300)), (1024, 576), "crop").size == (1024, 576)
