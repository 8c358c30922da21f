"""The service's model side without HTTP: ModelService on a real saved model and its model card.
(test_serve.py covers the same through Ray Serve and real HTTP.)"""

import io
import json

import numpy as np
import pytest
from PIL import Image

from fashion_tune.data import CLASS_NAMES
from fashion_tune.layout import ExportDir
from fashion_tune.predict import DEFAULT_UNSURE_BELOW
from fashion_tune.serve import ModelService, RequestError
from tests.conftest import constant_model

BAG = CLASS_NAMES.index("Bag")


@pytest.fixture
def export(tmp_path) -> ExportDir:
    """An export folder whose model answers Bag with probability 0.7, and whose card asks for a
    person's review below 0.8."""
    probabilities = np.full(10, 0.3 / 9)
    probabilities[BAG] = 0.7
    folder = ExportDir(tmp_path / "export")
    folder.path.mkdir()
    constant_model(probabilities).save(folder.model)
    folder.card_json.write_text(json.dumps({"name": "unit", "classes": list(CLASS_NAMES),
                                            "test_metrics": {"review": {"threshold": 0.8}}}))
    return folder


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()



def a_photo() -> bytes:
    image = Image.new("RGB", (120, 80), "white")
    image.paste((40, 30, 20), (30, 20, 90, 60))  # a dark box on white: a product on its background
    return png(image)


def test_classify_answers_with_the_card_s_review_threshold(export):
    service = ModelService(export, max_bytes=1_000_000)
    answer = service.classify("bag.png", a_photo())
    assert (answer["file"], answer["category"]) == ("bag.png", "Bag")
    assert answer["probability"] == pytest.approx(0.7, abs=1e-5)
    assert answer["unsure"] is True and answer["unsure_below"] == 0.8  # 0.7 < the card's 0.8
    assert list(answer["probabilities"])[0] == "Bag" and sum(answer["probabilities"].values()) == pytest.approx(1)


def test_without_a_card_the_default_threshold_applies(export):
    export.card_json.unlink()
    service = ModelService(export)
    assert service.exported.unsure_below == DEFAULT_UNSURE_BELOW and service.card["classes"] == list(CLASS_NAMES)
    assert service.classify("bag.png", a_photo())["unsure"] is False  # 0.7 >= 0.5


@pytest.mark.parametrize("raw, status, message", [
    (b"", 400, "empty file"),
    (b"hello", 400, "not an image Pillow can read"),
    (b"\0" * 2_000, 413, "2,000 bytes is over the limit of 1,000"),
])
def test_unusable_uploads_are_refused_with_their_status(export, raw, status, message):
    service = ModelService(export, max_bytes=1_000)
    with pytest.raises(RequestError, match=message) as err:
        service.classify("upload", raw)
    assert err.value.status == status


def test_a_batch_answers_each_file_and_keeps_going(export):
    service = ModelService(export)
    answers = service.classify_many([("a.png", a_photo()), ("broken.png", b"\x89PNG broken"), ("b.png", a_photo())])
    assert [a["file"] for a in answers] == ["a.png", "broken.png", "b.png"]
    assert answers[0]["category"] == answers[2]["category"] == "Bag"
    assert answers[1]["status"] == 400 and "broken.png" in answers[1]["error"] and "category" not in answers[1]


def test_a_multipart_request_is_judged_by_room_for_its_images(export):
    service = ModelService(export, max_bytes=1_000)
    service.check_form_size(3 * 1_000, images=3)  # three images at the limit fit
    with pytest.raises(RequestError, match="the request: .* over the limit") as err:
        service.check_form_size(10_000_000, images=1)
    assert err.value.status == 413
