"""The service's model side without HTTP: ModelService on a real saved model and its model card.
(test_serve.py covers the same through Ray Serve and real HTTP.)"""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from fashion_tune.data import CLASS_NAMES
from fashion_tune.serve import ModelService, RequestError, flag


@pytest.fixture
def export(unsure_bag_export):
    return unsure_bag_export


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def a_photo() -> bytes:
    image = Image.new("RGB", (120, 80), "white")
    image.paste((40, 30, 20), (30, 20, 90, 60))  # a dark box on white: a product on its background
    return png(image)


def decoded_data_url(url: str) -> np.ndarray:
    """A "data:image/png;base64,..." URL -> its pixels."""
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def classify(service: ModelService, name: str, raw: bytes, include_input: bool = False) -> dict:
    """One upload through the steps of the service's POST /v1/classify: decode, the model, the answer
    (there the model call is shared with concurrent requests: serve.build_app)."""
    x = service.decode(name, raw)
    return service.exported.answer(name, x, service.predict_each([x])[0], include_input)


def test_classify_answers_with_the_card_s_review_threshold(export):
    service = ModelService(export, max_bytes=1_000_000)
    answer = classify(service, "bag.png", a_photo())
    assert (answer["file"], answer["category"]) == ("bag.png", "Bag")
    assert answer["probability"] == pytest.approx(0.7, abs=1e-5)
    assert answer["unsure"] is True and answer["unsure_below"] == 0.8  # 0.7 < the card's 0.8
    assert list(answer["probabilities"])[0] == "Bag" and sum(answer["probabilities"].values()) == pytest.approx(1)


def test_without_a_card_no_threshold_is_invented(export):
    """Issue 34: a model without a card once got a review threshold of 50% that nobody chose."""
    export.card_json.unlink()
    service = ModelService(export)
    assert service.exported.unsure_below is None
    assert service.exported.card_json()["classes"] == list(CLASS_NAMES)
    answer = classify(service, "bag.png", a_photo())
    assert answer["unsure"] is False and answer["unsure_below"] is None


@pytest.mark.parametrize("raw, status, message", [
    (b"", 400, "empty file"),
    (b"hello", 400, "not an image Pillow can read"),
    (b"\0" * 2_000, 413, "2,000 bytes is over the limit of 1,000"),
])
def test_unusable_uploads_are_refused_with_their_status(export, raw, status, message):
    service = ModelService(export, max_bytes=1_000)
    with pytest.raises(RequestError, match=message) as err:
        service.decode("upload", raw)
    assert err.value.status == status


def test_a_batch_answers_each_file_and_keeps_going(export):
    service = ModelService(export)
    answers = service.classify_many([("a.png", a_photo()), ("broken.png", b"\x89PNG broken"), ("b.png", a_photo())])
    assert [a["file"] for a in answers] == ["a.png", "broken.png", "b.png"]
    assert answers[0]["category"] == answers[2]["category"] == "Bag"
    assert answers[1]["status"] == 400 and "broken.png" in answers[1]["error"] and "category" not in answers[1]


def test_the_size_limit_is_the_request_s_however_many_files_it_carries(export):
    """Issue 34: the limit was applied per file, so 32 files of 600 KB passed --max-mb 1."""
    from fashion_tune.serve import MULTIPART_OVERHEAD

    service = ModelService(export, max_bytes=1_000)
    service.check_form_size(1_000 + MULTIPART_OVERHEAD)  # one image at the limit, in its form, fits
    with pytest.raises(RequestError, match="the request: .* over the limit") as err:
        service.check_form_size(3 * 1_000 + MULTIPART_OVERHEAD)  # three images at the limit do not
    assert err.value.status == 413


@pytest.mark.parametrize("colour", ["white", "black", (128, 128, 128)])
def test_a_blank_photo_is_no_garment_found_422(export, colour):
    service = ModelService(export)
    with pytest.raises(RequestError) as err:
        service.decode("blank.png", png(Image.new("RGB", (120, 80), colour)))
    assert err.value.status == 422 and "blank.png" in str(err.value)


def test_no_garment_is_answered_422_for_that_file_and_the_batch_goes_on(export):
    blank = png(Image.new("RGB", (120, 80), (250, 250, 250)))
    answers = ModelService(export).classify_many([("a.png", a_photo()), ("blank.png", blank), ("b.png", a_photo())])
    assert answers[1] == {"file": "blank.png", "status": 422,
                          "error": "blank.png: no garment found (the image is blank, uniform or noise)"}
    assert answers[0]["category"] == answers[2]["category"] == "Bag"


def test_include_input_carries_the_28x28_image_the_model_saw(export):
    service = ModelService(export)
    seen = decoded_data_url(classify(service, "bag.png", a_photo(), include_input=True)["model_input"])
    expected = service.decode("bag.png", a_photo())[..., 0] * 255
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    assert np.abs(seen - expected).max() <= 0.5 + 1e-4  # 8-bit rounding only
    assert "model_input" not in classify(service, "bag.png", a_photo())


def test_include_input_in_a_batch_goes_with_each_classified_file(export):
    uploads = [("a.png", a_photo()), ("broken.png", b"\x89PNG broken")]
    answers = ModelService(export).classify_many(uploads, include_input=True)
    assert decoded_data_url(answers[0]["model_input"]).shape == (28, 28)
    assert "model_input" not in answers[1]


@pytest.mark.parametrize("query, expected", [
    ({}, False), ({"include_input": "true"}, True), ({"include_input": "1"}, True), ({"include_input": "TRUE"}, True),
    ({"include_input": "false"}, False), ({"include_input": "0"}, False),
])
def test_the_include_input_flag(query, expected):
    assert flag(query, "include_input") is expected


@pytest.mark.parametrize("value", ["yes", "", "2"])
def test_any_other_flag_value_is_a_400_that_names_it(value):
    with pytest.raises(RequestError, match=f"include_input is {value!r}, must be true or false") as err:
        flag({"include_input": value}, "include_input")
    assert err.value.status == 400


def test_one_model_call_for_many_inputs_answers_each_in_its_place(export):
    import keras

    # random weights: every input gets its own answer
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.save(export.model)
    service = ModelService(export)
    inputs = list(np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32))
    batched = service.predict_each(inputs)
    assert len(batched) == 5
    for x, probs in zip(inputs, batched):
        assert probs == pytest.approx(service.exported.probabilities(x[None])[0], abs=1e-6)
