"""Photo -> model input: what is not a usable image gets one line naming the file."""

import pytest
from PIL import Image

from fashion_tune import images


def test_bad_images_get_one_line_each(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    Image.new("1", (10_000, 5_000)).save(tmp_path / "bomb.png")  # 50 Mpx, a few KB on disk
    for name, message in [("empty.png", "empty file"), ("text.jpg", "not an image Pillow can read"),
                          ("bomb.png", "over the limit")]:
        with pytest.raises(images.ImageError, match=message) as err:
            images.load(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)
